"""The aggregator process: a group consumer over the facts (local and mirrored from other
regions, by pattern), delivery attempts, feedback and the roster, feeding `Aggregator`.

Plain aiokafka with read_committed, not faust: faust stalled the booking processor for seconds
to minutes under load, and a batch loop is what exactly-once-in-effect needs anyway (dedup and
one write per KPI document per batch, then the offset commit).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from optisync_common.clock import Clock, SystemClock
from optisync_common.kafka import consume_forever, make_admin, make_consumer
from optisync_common.logging import get_logger
from optisync_common.resources import NotReady, Resources
from schemas.registry import (
    BOOKING_FACTS,
    FEEDBACK_EVENTS,
    NOTIFY_DELIVERIES,
    ROSTER_EVENTS,
    subscription_pattern,
)
from services.analytics.adapters import metrics
from services.analytics.adapters.aggregator import Aggregator, records_of
from services.analytics.adapters.readmodel import KpiReadModel
from services.analytics.adapters.store import KpiStore, WatermarkConflict
from services.analytics.settings import AnalyticsSettings

log = get_logger(__name__)

SOURCES = (BOOKING_FACTS, NOTIFY_DELIVERIES, FEEDBACK_EVENTS, ROSTER_EVENTS)
# Each topic and its MirrorMaker 2 copies from other regions (`eu.booking.facts.v1`, DESIGN §6).
TOPIC_PATTERN = "|".join(f"(?:{subscription_pattern(name)})" for name in SOURCES)


class AggregatorWorker:
    def __init__(self, settings: AnalyticsSettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.aggregator: Aggregator | None = None
        self._task: asyncio.Task[None] | None = None
        self._pruner: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._assigned = asyncio.Event()
        # The partitions it reads whose start positions are resolved: with the `latest` reset,
        # a record published to a partition before then may be skipped.
        self._positioned: frozenset[TopicPartition] = frozenset()
        self._stopping = asyncio.Event()
        self.counted = 0

    async def start(self, resources: Resources) -> None:
        if resources.redis is None:
            raise NotReady("the aggregator needs Redis (the KPI read model)")
        store = KpiStore(resources.db)
        await store.ensure_indexes()
        self.aggregator = Aggregator(store, self.settings.service_name, self.clock)
        self.aggregator.read_model = KpiReadModel(resources.redis, self.settings.redis_prefix)
        self._task = asyncio.create_task(self._run(), name="analytics-aggregator")
        self._pruner = asyncio.create_task(self._prune_seen(store), name="analytics-prune")

    async def _prune_seen(self, store: KpiStore) -> None:
        """Hourly: forget event ids older than any record the topics can still deliver."""
        while True:
            cutoff = self.clock.now() - dt.timedelta(days=self.settings.seen_retention_days)
            try:
                dropped = await store.forget_seen_before(cutoff)
                if dropped:
                    log.info("analytics_seen_ids_pruned", dropped=dropped, before=str(cutoff))
            except Exception as exc:  # MongoDB away: try again next hour
                log.warning("analytics_prune_failed", error=repr(exc))
            await asyncio.sleep(3600)

    async def stop(self, grace_s: float = 10.0) -> None:
        """Let the batch in hand finish and commit (a batch cut short leaves claims to re-check
        on the next start, which FerretDB makes slow), then stop; cancel after `grace_s`."""
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace_s)
            except (TimeoutError, asyncio.CancelledError):
                pass
            except Exception as exc:
                log.warning("aggregator_stopped_with_error", error=repr(exc))
        for task in (self._task, self._pruner):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._task = self._pruner = None

    async def check(self) -> None:
        if self._task is None or self._task.done() or self._consumer is None:
            raise NotReady("aggregator consumer is not running")

    async def check_kafka(self) -> None:
        """Readiness: the consumer is connected and the cluster answers a metadata request."""
        consumer = self._consumer
        if consumer is None:
            raise NotReady("consumer not connected")
        await consumer.topics()

    async def wait_assigned(self, within_s: float = 30.0) -> None:
        await asyncio.wait_for(self._assigned.wait(), within_s)

    def assignment(self) -> set[TopicPartition]:
        """The partitions it reads, each listed once its start position is resolved: what is
        published there from then on is counted."""
        return set(self._positioned)

    async def _run(self) -> None:
        def make() -> AIOKafkaConsumer:
            return make_consumer(
                self.settings,
                group_id=self.settings.consumer_group,
                pattern=TOPIC_PATTERN,
                auto_offset_reset=self.settings.consumer_offset_reset,
                client_id=f"{self.settings.service_name}-aggregator",
                max_partition_fetch_bytes=4 * 1024 * 1024,
                metadata_max_age_ms=self.settings.metadata_refresh_ms,
            )

        async def consume(consumer: AIOKafkaConsumer) -> None:
            self._consumer = consumer
            await self._consume(consumer)
            raise asyncio.CancelledError  # stopping: end consume_forever (it stops the consumer)

        def disconnected() -> None:
            self._consumer = None
            self._assigned.clear()
            self._positioned = frozenset()
            if self.aggregator is not None:
                self.aggregator.reset()

        await consume_forever(make, consume, what="aggregator", on_disconnect=disconnected)

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        assert self.aggregator is not None, "start() first"
        owned: frozenset[TopicPartition] = frozenset()
        window = {"records": 0, "counted": 0, "duplicates": 0}
        logged_at = time.monotonic()
        while not self._stopping.is_set():
            batch = await consumer.getmany(
                timeout_ms=200, max_records=self.settings.max_batch_records
            )
            assignment = frozenset(consumer.assignment())
            if assignment != owned:
                # Another consumer may have written our new partitions' documents meanwhile.
                self.aggregator.reset()
                owned = assignment
                for tp in assignment:
                    await consumer.position(tp)  # resolve the reset before tests publish
                self._positioned = assignment
                if assignment:
                    self._assigned.set()
            if not batch:
                continue
            try:
                stats = await self.aggregator.apply(records_of(batch))
            except WatermarkConflict:
                metrics.CONFLICTS.inc()
                raise  # a fresh consumer re-reads from the committed offsets
            self.counted += stats.counted
            await consumer.commit({tp: rs[-1].offset + 1 for tp, rs in batch.items() if rs})
            window["records"] += stats.records
            window["counted"] += stats.counted
            window["duplicates"] += stats.duplicates
            if time.monotonic() - logged_at >= 30:  # a heartbeat for ops, not a line per batch
                elapsed = round(time.monotonic() - logged_at)
                log.info("analytics_progress", **window, seconds=elapsed)
                window = dict.fromkeys(window, 0)
                logged_at = time.monotonic()


async def source_partitions(settings: AnalyticsSettings) -> list[TopicPartition]:
    import re

    pattern = re.compile(TOPIC_PATTERN)
    admin = make_admin(settings)
    await admin.start()
    try:
        names = sorted(t for t in await admin.list_topics() if pattern.match(t))
        described = await admin.describe_topics(names) if names else []
    finally:
        await admin.close()
    return [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]


async def rebuild(
    settings: AnalyticsSettings,
    resources: Resources,
    out: Callable[[str], Any] = print,
    partitions: Sequence[TopicPartition] | None = None,
    from_offsets: Mapping[TopicPartition, int] | None = None,
) -> int:
    """Drop the KPIs and replay every source partition (or `partitions`) from its beginning
    (or `from_offsets`) to its current end. Stop the live worker first; on restart it skips
    what was folded in."""
    store = KpiStore(resources.db)
    await store.drop()
    aggregator = Aggregator(store, settings.service_name)
    if resources.redis is not None:
        aggregator.read_model = KpiReadModel(resources.redis, settings.redis_prefix)
        await aggregator.read_model.clear()
    tps = list(partitions) if partitions is not None else await source_partitions(settings)
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    read, started = 0, time.monotonic()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        for tp, offset in (from_offsets or {}).items():
            consumer.seek(tp, offset)
        end = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if end[tp] > await consumer.position(tp)}
        out(f"[rebuild] replaying {len(remaining)} non-empty partitions of {len(tps)}")
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
            batch = {tp: [r for r in rs if r.offset < end[tp]] for tp, rs in batch.items()}
            await aggregator.apply(records_of(batch))
            read += sum(len(rs) for rs in batch.values())
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    out(f"[rebuild] {read} records in {time.monotonic() - started:.1f}s")
    return read
