"""A 202'd command's decision, found in `booking.events.v1` itself.

The reply waiter of the API process that answered 202 stores the decision under the status URL
when it comes. When that process is gone (a rolling restart, a crash) or stopped waiting (its
late window passed), nobody would: the status stayed "pending" for its whole TTL although the
decision was in the topic. A status read then looks for it here: in the one partition the
decision's key (the store id) puts it in, from a little before the command was sent, up to the
partition's end, at most `max_records` and `max_seconds` a look; a fruitless look saves where it
stopped, so the next goes on from there.

Redis keeps no copy on disk, so each 202'd command's lookup is also kept in MongoDB
(`KeptLookups`): after a Redis loss its status URL is marked pending again from there and looked
up anew, instead of answering 404.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from dataclasses import asdict, replace
from typing import Any

import orjson
from aiokafka import TopicPartition
from prometheus_client import Counter
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from optisync_common.kafka import make_consumer
from optisync_common.logging import get_logger
from optisync_common.settings import ServiceSettings
from optisync_common.txstream import default_partition
from schemas.registry import BOOKING_EVENTS
from schemas.serde import decode
from services.booking.adapters.replies import (
    CommandOutcomes,
    LateLookup,
    Outcome,
    Render,
    decides,
    topic_partitions,
)

log = get_logger(__name__)

LATE_LOOKUPS = Counter(
    "optisync_booking_late_decision_lookups_total",
    "Status reads that looked for a 202'd command's decision in the topic, by result",
    ["result"],  # found, not_yet, failed
)


class LateDecisions:
    def __init__(
        self,
        settings: ServiceSettings,
        outcomes: CommandOutcomes,
        *,
        topic: str = BOOKING_EVENTS,
        max_records: int = 50_000,
        max_seconds: float = 3.0,
        clock_skew_ms: int = 5_000,  # between the API's clock and the broker's
    ) -> None:
        self.settings = settings
        self.outcomes = outcomes
        self.topic = topic
        self.max_records = max_records
        self.max_seconds = max_seconds
        self.clock_skew_ms = clock_skew_ms

    async def find(self, correlation_id: str, lookup: LateLookup, render: Render) -> Outcome | None:
        """The command's outcome, stored under its status URL, or None when its decision is
        not in the topic yet (the progress is saved)."""
        started = time.monotonic()
        tp = await self._partition(lookup.store_id)
        consumer = make_consumer(
            self.settings, group_id=None, client_id=f"{self.settings.service_name}-late"
        )
        await consumer.start()
        try:
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            position = lookup.scanned_to
            if position is None:
                found = await consumer.offsets_for_times({tp: lookup.sent_ms - self.clock_skew_ms})
                position = found[tp].offset if found.get(tp) is not None else end
            scanned = 0
            consumer.seek(tp, position)
            while (
                position < end
                and scanned < self.max_records
                and time.monotonic() - started < self.max_seconds
            ):
                batch = await consumer.getmany(tp, timeout_ms=1000, max_records=2000)
                records = batch.get(tp, [])
                for record in records:
                    if _is_decision(record.value, correlation_id, lookup):
                        envelope = decode(record.value, record.headers)
                        outcome = await render(envelope)
                        await self.outcomes.save([(correlation_id, outcome)])
                        LATE_LOOKUPS.labels("found").inc()
                        took_s = round(time.monotonic() - started, 3)
                        log.info("late_decision_found", correlation_id=correlation_id,
                                 scanned=scanned, took_s=took_s)  # fmt: skip
                        return outcome
                scanned += len(records)
                position = await consumer.position(tp)
        finally:
            await consumer.stop()
        await self.outcomes.save_progress(correlation_id, replace(lookup, scanned_to=position))
        LATE_LOOKUPS.labels("not_yet").inc()
        log.info("late_decision_not_yet", correlation_id=correlation_id, scanned=scanned,
                 scanned_to=position)  # fmt: skip
        return None

    async def _partition(self, store_id: str) -> TopicPartition:
        partitions = await topic_partitions(self.settings, self.topic)
        numbers = sorted(tp.partition for tp in partitions)
        return TopicPartition(self.topic, default_partition(store_id.encode(), numbers))


def _is_decision(value: bytes | None, correlation_id: str, lookup: LateLookup) -> bool:
    try:
        head = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return False
    return (
        isinstance(head, dict)
        and head.get("correlation_id") == correlation_id
        and decides(head, lookup.command_event_id, lookup.accepts)
    )


class KeptLookups:
    """Each 202'd command's lookup, kept in MongoDB (`command_lookups`, by correlation id) for
    as long as its status is readable. Expired ones are purged at most once an hour, by a
    filter rather than a TTL index: FerretDB v1 keeps no secondary index (`ensure_indexes`)."""

    COLLECTION = "command_lookups"
    PURGE_EVERY_S = 3600.0

    def __init__(self, db: AsyncDatabase[dict[str, Any]], ttl_s: int) -> None:
        self.coll = db[self.COLLECTION]
        self.ttl_s = ttl_s
        self._next_purge = 0.0

    async def keep(self, correlation_id: str, lookup: LateLookup) -> None:
        now = time.time()
        expires_at = dt.datetime.fromtimestamp(now + self.ttl_s, dt.UTC)
        doc = {"_id": correlation_id, "lookup": asdict(lookup), "expires_at": expires_at}
        with contextlib.suppress(DuplicateKeyError):  # kept already: the same lookup
            await self.coll.insert_one(doc)
        if now >= self._next_purge:
            self._next_purge = now + self.PURGE_EVERY_S
            await self._purge(dt.datetime.fromtimestamp(now, dt.UTC))

    async def _purge(self, now: dt.datetime) -> None:
        try:
            await self.coll.delete_many({"expires_at": {"$lt": now}})
        except Exception as exc:  # the lookup is kept; the next purge takes these too
            log.warning("kept_lookups_not_purged", error=repr(exc))

    async def get(self, correlation_id: str) -> tuple[LateLookup, int] | None:
        """The kept lookup and the seconds its status stays readable, or None (unknown,
        expired, or not a lookup this version reads)."""
        doc = await self.coll.find_one({"_id": correlation_id})
        if doc is None:
            return None
        left_s = int(doc["expires_at"].timestamp() - time.time())  # the client is tz-aware
        try:
            lookup = LateLookup.of_raw(doc["lookup"])
        except (KeyError, TypeError):
            log.warning("kept_lookup_unreadable", correlation_id=correlation_id)
            return None
        return (lookup, left_s) if left_s > 0 else None
