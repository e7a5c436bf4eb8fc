"""Replay from `notify.dlq.v1`: dead-lettered notifications become due again and are sent
(once: only a notification still dead-lettered is revived, so replaying twice sends nothing)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import TopicPartition

from optisync_common.clock import Clock, SystemClock
from optisync_common.kafka import make_admin, make_consumer
from optisync_common.resources import open_resources
from schemas.events.dlq import DeadLetter
from schemas.serde import DecodeError, decode
from services.notify.adapters.dispatcher import NOTIFY_DLQ, Dispatcher
from services.notify.adapters.storage import PENDING, SENT, DueIndex, NotifyRepository
from services.notify.settings import NotifySettings

_DATES = ("due_at", "stale_after", "slot_start", "created_at", "sent_at", "finished_at")


@dataclass
class ReplayReport:
    letters: int = 0
    revived: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    still_failing: list[str] = field(default_factory=list)


def _doc_of(letter: DeadLetter) -> dict[str, Any] | None:
    raw = letter.original_value()
    if raw is None:
        return None
    doc: dict[str, Any] = orjson.loads(raw)
    for name in _DATES:
        if isinstance(doc.get(name), str):
            doc[name] = dt.datetime.fromisoformat(doc[name])
    return doc


async def topic_partitions(settings: NotifySettings, topic: str) -> list[TopicPartition]:
    admin = make_admin(settings)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return [
        TopicPartition(t["topic"], int(p["partition"]))
        for t in described
        for p in sorted(t["partitions"], key=lambda p: int(p["partition"]))
    ]


async def read_letters(settings: NotifySettings) -> list[DeadLetter]:
    """Every notification dead letter currently on the DLQ topic (no consumer group)."""
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        tps = await topic_partitions(settings, NOTIFY_DLQ)
        if not tps:
            return letters
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if end[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=2000)
            for tp, records in batch.items():
                for record in records:
                    try:
                        envelope = decode(record.value, record.headers)
                    except DecodeError:
                        continue
                    payload = envelope.payload
                    if isinstance(payload, DeadLetter) and payload.error_type == "delivery_failed":
                        letters.append(payload)
                if records and records[-1].offset + 1 >= end[tp]:
                    remaining.discard(tp)
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return letters


async def _settled_state(repo: NotifyRepository, nid: str, within_s: float = 3.0) -> str | None:
    """The notification's state once no one is sending it: a running worker may have picked
    the revived notification up first (it is due at once), then this waits for its outcome."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        state = (await repo.get(nid) or {}).get("state")
        if state != PENDING or asyncio.get_running_loop().time() >= deadline:
            return state
        await asyncio.sleep(0.1)


async def replay(
    settings: NotifySettings,
    *,
    notification_ids: Collection[str] = (),
    store_id: str | None = None,
    clock: Clock | None = None,
    out: Callable[[str], Any] = print,
) -> ReplayReport:
    clock = clock or SystemClock()
    report = ReplayReport()
    letters = await read_letters(settings)
    async with open_resources(settings) as resources:
        await resources.wait_for_kafka()
        assert resources.redis is not None and resources.producer is not None
        producer = resources.producer
        repo = NotifyRepository(resources.db, DueIndex.of(resources.redis, settings.redis_prefix))
        dispatcher = Dispatcher(settings, repo, resources.redis, lambda: producer, clock)
        try:
            seen: set[str] = set()
            for letter in letters:
                key = letter.original_key()
                nid = key.decode() if key else ""
                if not nid or nid in seen:
                    continue
                seen.add(nid)
                doc = _doc_of(letter)
                if notification_ids and nid not in notification_ids:
                    continue
                if store_id is not None and (doc or {}).get("store_id") != store_id:
                    continue
                report.letters += 1
                if not await repo.revive(nid, doc, clock.now()):
                    continue  # already replayed or sent
                report.revived.append(nid)
                await dispatcher.deliver_one(nid)
                state = await _settled_state(repo, nid)
                (report.sent if state == SENT else report.still_failing).append(nid)
        finally:
            await dispatcher.adapters.close()
    out(
        f"[replay] {report.letters} dead letters matched, {len(report.revived)} revived, "
        f"{len(report.sent)} sent, {len(report.still_failing)} still failing (retried by the "
        "worker with backoff)"
    )
    return report
