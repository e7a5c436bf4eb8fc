"""The aggregator's crash windows on the real FerretDB: a batch interrupted after claiming its
event ids, or after updating only some of its documents, is counted exactly once when the
records are redelivered to a fresh aggregator (a restarted process)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pytest

from optisync_common.resources import Resources
from schemas.envelope import Envelope, new_envelope
from schemas.events.base import Channel
from schemas.events.facts import BookingFact, FactKind
from schemas.serde import encode
from services.analytics.adapters.aggregator import Aggregator
from services.analytics.adapters.readmodel import KpiReadModel
from services.analytics.adapters.store import KpiStore
from services.analytics.domain.dedup import deltas, doc_id, source_key

AT = dt.datetime(2026, 3, 2, 3, 0, tzinfo=dt.UTC)


@dataclass
class FakeRecord:
    """A consumer record as aiokafka hands it over (the broker is not what is tested here)."""

    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def _records(store: str, kinds: list[tuple[FactKind, dt.date]], first_offset: int = 0) -> Any:
    out = []
    for i, (kind, day) in enumerate(kinds):
        env: Envelope[Any] = new_envelope(
            BookingFact(fact=kind, store_id=store, region="cn", exam_type="standard",
                        channel=Channel.WEB, local_date=day),
            region="cn", store_id=store, correlation_id=f"c{i}", occurred_at=AT,
        )  # fmt: skip
        m = encode(env)
        out.append(FakeRecord("booking.facts.v1", 7, first_offset + i, m.value, m.key, m.headers))
    return out


async def _counts(store: KpiStore, store_id: str, day: dt.date) -> dict[str, int]:
    doc = await store.days.find_one({"_id": doc_id(store_id, day.isoformat())})
    return dict(doc["counts"]) if doc else {}


@pytest.fixture
def kpi_store(analytics_resources: Resources) -> KpiStore:
    return KpiStore(analytics_resources.db)


async def test_claimed_but_not_counted_batch_is_counted_once_after_a_restart(
    kpi_store: KpiStore, unique_id: str
) -> None:
    store_id = f"eo-{unique_id}"
    d1, d2 = dt.date(2026, 3, 2), dt.date(2026, 3, 3)
    batch = _records(store_id, [(FactKind.REQUESTED, d1), (FactKind.CONFIRMED, d1),
                                (FactKind.REQUESTED, d2)])  # fmt: skip

    # First life: claims its event ids and updates only the first document, then "crashes".
    first = Aggregator(kpi_store)
    items = await first._items(batch, stats=_stats())
    await kpi_store.record_claims({items[0].source: 2})
    assert await kpi_store.claim(items, AT) == set()
    d1_delta = deltas(items)[doc_id(store_id, d1.isoformat())]
    await kpi_store.apply(doc_id(store_id, d1.isoformat()), d1_delta, None)

    # Second life: the offsets were never committed, so the whole batch comes again.
    second = Aggregator(kpi_store)
    stats = await second.apply(batch)
    assert (stats.redelivered, stats.recovered, stats.counted) == (2, 1, 1)
    assert await _counts(kpi_store, store_id, d1) == {"requested": 1, "confirmed": 1}
    assert await _counts(kpi_store, store_id, d2) == {"requested": 1}

    # And once more after committing: nothing changes.
    third = Aggregator(kpi_store)
    assert (await third.apply(batch)).counted == 0
    assert await _counts(kpi_store, store_id, d2) == {"requested": 1}


async def test_the_same_event_in_another_record_is_a_duplicate_even_below_the_horizon(
    kpi_store: KpiStore, unique_id: str
) -> None:
    store_id = f"eo-{unique_id}"
    day = dt.date(2026, 3, 4)
    batch = _records(store_id, [(FactKind.REQUESTED, day), (FactKind.NO_SHOW, day)], 100)
    assert (await Aggregator(kpi_store).apply(batch)).counted == 2
    # The same envelopes republished later (new offsets), read by a restarted aggregator
    # after a crash left them claimed-but-unsettled: their claims belong to other records, so
    # they are still skipped.
    again: Any = [
        FakeRecord(r.topic, r.partition, r.offset + 2, r.value, r.key, r.headers) for r in batch
    ]
    await kpi_store.record_claims({source_key("booking.facts.v1", 7): 103})
    stats = await Aggregator(kpi_store).apply(again)
    assert (stats.counted, stats.duplicates) == (0, 2)
    assert await _counts(kpi_store, store_id, day) == {"requested": 1, "no_show": 1}


async def test_event_ids_older_than_the_retention_are_forgotten(
    kpi_store: KpiStore, unique_id: str
) -> None:
    store_id = f"eo-{unique_id}"
    old = _records(store_id, [(FactKind.REQUESTED, dt.date(2026, 1, 1))], 200)
    items = await Aggregator(kpi_store)._items(old, stats=_stats())
    await kpi_store.claim(items, AT - dt.timedelta(days=40))
    recent = _records(store_id, [(FactKind.REQUESTED, dt.date(2026, 3, 1))], 201)
    await kpi_store.claim(await Aggregator(kpi_store)._items(recent, stats=_stats()), AT)
    assert await kpi_store.forget_seen_before(AT - dt.timedelta(days=35)) >= 1
    remaining = await kpi_store.claims_of([items[0].event_id])
    assert remaining == {}
    recent_id = (await Aggregator(kpi_store)._items(recent, stats=_stats()))[0].event_id
    assert recent_id in await kpi_store.claims_of([recent_id])


def _stats() -> Any:
    from services.analytics.adapters.aggregator import BatchStats

    return BatchStats()


async def test_read_model_follows_mongodb_and_is_reloaded_after_a_restart(
    kpi_store: KpiStore, analytics_resources: Resources, unique_id: str
) -> None:
    assert analytics_resources.redis is not None
    model = KpiReadModel(analytics_resources.redis, f"rm-{unique_id}:")
    store_id = f"rm-{unique_id}"
    day = dt.date(2026, 3, 9)
    first = Aggregator(kpi_store, read_model=model)
    await first.apply(_records(store_id, [(FactKind.REQUESTED, day), (FactKind.CONFIRMED, day)]))
    served = await model.store_days(day, day, store_ids=[store_id])
    assert [(d.store_id, d.counts) for d in served or []] == [
        (store_id, {"requested": 1, "confirmed": 1})
    ]
    # An older version never overwrites a newer one (two aggregators writing one day).
    doc = await kpi_store.days.find_one({"_id": doc_id(store_id, day.isoformat())})
    assert doc is not None
    await model.put([{**doc, "v": doc["v"] - 1, "counts": {"requested": 99}}])
    assert (await model.store_days(day, day, store_ids=[store_id]) or [])[0].counts[
        "requested"
    ] == 1

    # A crash after the MongoDB write but before Redis: Redis holds an old value; the restarted
    # aggregator reloads the model from MongoDB before its first batch.
    await analytics_resources.redis.hset(
        f"rm-{unique_id}:days:{day.isoformat()}", store_id, '{"r": "cn", "v": 0, "c": {}}'
    )
    await analytics_resources.redis.delete(f"rm-{unique_id}:days-ready")
    assert await model.store_days(day, day) is None  # the API falls back to MongoDB meanwhile
    restarted = Aggregator(kpi_store, read_model=model)
    await restarted.apply(_records(store_id, [(FactKind.NO_SHOW, day)], 50))
    served = await model.store_days(day, day, store_ids=[store_id])
    assert [d.counts for d in served or []] == [{"requested": 1, "confirmed": 1, "no_show": 1}]
    await model.clear()
