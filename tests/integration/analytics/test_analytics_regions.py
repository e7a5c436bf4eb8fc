"""Facts mirrored from another region (MirrorMaker 2 names them `<region>.booking.facts.v1`)
are aggregated like local ones, and the region rollup separates them."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from optisync_common.kafka import make_admin
from schemas.envelope import Envelope, new_envelope
from schemas.events.base import Channel
from schemas.events.facts import BookingFact, FactKind
from schemas.serde import encode
from services.analytics.adapters.worker import AggregatorWorker
from services.analytics.settings import AnalyticsSettings

MIRRORED = "ap.booking.facts.v1"
DAY = dt.date(2026, 4, 1)


def _fact(kind: FactKind, store_id: str, region: str) -> Envelope[Any]:
    payload = BookingFact(fact=kind, store_id=store_id, region=region, exam_type="standard",
                          channel=Channel.LINE, local_date=DAY)  # fmt: skip
    return new_envelope(payload, region=region, store_id=store_id, correlation_id="r",
                        occurred_at=dt.datetime(2026, 4, 1, 1, tzinfo=dt.UTC))  # fmt: skip


async def test_mirrored_facts_are_counted_per_region(
    analytics_settings: AnalyticsSettings,
    aggregator_worker: AggregatorWorker,
    producer: AIOKafkaProducer,
    api: httpx.AsyncClient,
    unique_id: str,
) -> None:
    admin = make_admin(analytics_settings)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(MIRRORED, 2, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()
    # The pattern subscription picks the new topic up at the next metadata refresh.
    for _ in range(300):
        if any(tp.topic == MIRRORED for tp in aggregator_worker.assignment()):
            break
        await asyncio.sleep(0.1)
    assert TopicPartition(MIRRORED, 0) in aggregator_worker.assignment()

    remote, local = f"tokyo-{unique_id}", f"shanghai-{unique_id}"
    for env, topic in [
        (_fact(FactKind.REQUESTED, remote, "ap"), MIRRORED),
        (_fact(FactKind.CONFIRMED, remote, "ap"), MIRRORED),
        (_fact(FactKind.REQUESTED, local, "cn"), None),
    ]:
        m = encode(env)
        await producer.send_and_wait(topic or m.topic, m.value, key=m.key, headers=m.headers)

    params: list[tuple[str, str | int | float | bool | None]] = [
        ("from", DAY.isoformat()), ("to", DAY.isoformat()), ("granularity", "total"),
        ("group_by", "region"), ("store_id", remote), ("store_id", local),
    ]  # fmt: skip
    expected = {"ap": {"requested": 1, "confirmed": 1}, "cn": {"requested": 1}}
    rows: dict[str, Any] = {}
    for _ in range(300):  # the facts are counted as they arrive: wait for all three
        found = (await api.get("/v1/kpis", params=params)).json()["rows"]
        rows = {r["key"]: r["counts"] for r in found}
        if rows == expected:
            break
        await asyncio.sleep(0.1)
    assert rows == expected
