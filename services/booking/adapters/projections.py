"""The booking projector: `booking.events.v1`, `availability.v1` and `roster.events.v1` into
MongoDB booking documents and the Redis views (DESIGN.md §3.4).

A consumer group (`booking-projector`) shares the partitions between projector instances.
Each batch is applied partition by partition (in order within a partition, partitions
concurrently) and committed only after it was applied, so a crash means a redelivery, which
the projections absorb (event ids on documents, `seq` on views, replace/union on catalogs).
A record that cannot be decoded goes to its topic's DLQ when the registry names one, else it is
logged and skipped; a failure of MongoDB or Redis stops that partition at the record and
retries it with backoff instead of skipping it.

The views projector also notices when Redis lost the views (a restart without persistence, a
flush): each input partition it replayed from its start is marked in Redis (`ViewsRefill`), so a
missing mark means the views of that partition are gone with it, and the partition is replayed
from its start again (compacted `availability.v1` holds each store-day's latest view).

`rebuild` drops the projections and replays the topics from the beginning without a group.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import Histogram
from redis.exceptions import RedisError

from optisync_common.clock import Clock, SystemClock
from optisync_common.dlq import dead_letter
from optisync_common.kafka import (
    active_groups,
    consume_forever,
    linger,
    make_admin,
    make_consumer,
)
from optisync_common.logging import get_logger
from optisync_common.metrics import count_consumed
from optisync_common.priority import Yielding
from optisync_common.resources import NotReady, Resources, open_resources
from optisync_common.settings import ServiceSettings
from schemas.envelope import Envelope
from schemas.events.availability import StoreDayAvailability
from schemas.events.base import EventPayload
from schemas.registry import (
    AVAILABILITY,
    BOOKING_EVENTS,
    ROSTER_EVENTS,
    UnknownTopicError,
    dlq_topic_for,
    local_topic_name,
    subscription_pattern,
)
from schemas.serde import DecodeError, decode
from services.booking.adapters.bookings import BookingRepository
from services.booking.adapters.views import RedisViews

log = get_logger(__name__)

GROUP_ID = "booking-projector"
VIEWS_GROUP_ID = "booking-projector-views"
# Booking events are local (PII); roster and availability also arrive mirrored from other
# regions (`<region>.<topic>`), so a region can validate and show stores homed elsewhere.
DOCUMENTS_PATTERN = f"^{re.escape(BOOKING_EVENTS)}$"
VIEWS_PATTERN = "|".join(
    f"(?:{subscription_pattern(name)})" for name in (AVAILABILITY, ROSTER_EVENTS)
)
TOPIC_PATTERN = f"{DOCUMENTS_PATTERN}|{VIEWS_PATTERN}"


class Record(Protocol):
    """The fields of an aiokafka ConsumerRecord we use (aiokafka ships no type hints)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    timestamp: int  # ms since the epoch


Batch = dict[TopicPartition, list[Record]]
RejectHook = Callable[[Record, Exception], Awaitable[None]]

# How far behind the projections are: how old each batch's oldest record is when it arrives.
BATCH_AGE = Histogram(
    "optisync_projection_batch_age_seconds",
    "Age of the oldest record of each projected batch (write to projection start)",
    ["group"],
    buckets=(0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 300),
)


class ProjectionWriter:
    """Applies decoded events to whichever projection their topic feeds."""

    def __init__(self, repo: BookingRepository, views: RedisViews, clock: Clock) -> None:
        self.repo = repo
        self.views = views
        self.clock = clock

    async def apply(self, topic: str, envelope: Envelope[EventPayload]) -> str:
        """One booking or roster event (availability views go in runs: `write_views`)."""
        payload = envelope.payload
        if topic == BOOKING_EVENTS:
            return await self.repo.project(envelope)
        if topic == ROSTER_EVENTS:
            changed = await self.views.apply_roster_event(envelope.store_id, payload)
            return "applied" if changed else "ignored"
        return "ignored"

    async def write_views(self, envelopes: Sequence[Envelope[EventPayload]]) -> list[str]:
        """Availability views, in order, in one Redis call per `VIEWS_PER_CALL` (a payload of
        another type on the topic is ignored)."""
        views = [e.payload for e in envelopes if isinstance(e.payload, StoreDayAvailability)]
        written = iter(await self.views.apply_availability(views, self.clock.now()))
        return [
            next(written) if isinstance(e.payload, StoreDayAvailability) else "ignored"
            for e in envelopes
        ]


class Unprojectable(Exception):
    """A decodable event the projections refuse (e.g. an idempotency key already taken)."""


def store_of_key(topic: str, key: bytes | None) -> str | None:
    """The store a record is about, from its Kafka key (`store_id` or `store_id:date`)."""
    if key is None:
        return None
    text = key.decode("utf-8", "replace")
    return text.rsplit(":", 1)[0] if local_topic_name(topic) == AVAILABILITY else text


Item = TypeVar("Item")
Result = TypeVar("Result")


class CoalescedWrites(Generic[Item, Result]):
    """Items from partitions applied concurrently, in one write: new bookings' documents in
    one insert, availability views in one Redis call.

    `apply_batch` starts every partition's handler at once, and each that reaches a write in
    the same turn of the event loop joins the same `write` call. The cost is mostly per write:
    FerretDB's is one SQLite transaction (a document cost it 0.2 ms of CPU in writes of 4 and
    0.08 ms in writes of 50), Redis's and ours a round trip; at 500 bookings/s a 100 ms batch
    brings about 4 of each per partition.
    """

    def __init__(self, write: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]]) -> None:
        self._write_items = write
        self._waiting: list[tuple[int, asyncio.Future[list[Result]]]] = []
        self._items: list[Item] = []
        self._writes: set[asyncio.Task[None]] = set()

    async def __call__(self, items: Sequence[Item]) -> list[Result]:
        loop = asyncio.get_running_loop()
        if not self._waiting:  # runs after the handlers already scheduled have had their turn
            loop.call_soon(self._write_waiting)
        future: asyncio.Future[list[Result]] = loop.create_future()
        self._waiting.append((len(items), future))
        self._items.extend(items)
        return await future

    def _write_waiting(self) -> None:
        waiting, items = self._waiting, self._items
        self._waiting, self._items = [], []
        write = asyncio.create_task(self._write(waiting, items))
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)

    async def _write(
        self, waiting: list[tuple[int, asyncio.Future[list[Result]]]], items: list[Item]
    ) -> None:
        try:
            results = await self._write_items(items)
        except BaseException as exc:  # each caller fails (and retries) as if it wrote alone
            for _, future in waiting:
                if not future.done():
                    future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        start = 0
        for count, future in waiting:
            if not future.done():  # a caller cancelled meanwhile (the projector stopping)
                future.set_result(list(results[start : start + count]))
            start += count


Coalesced = CoalescedWrites[Envelope[EventPayload], str]


class RecordHandler:
    """Decode, apply, and hand whatever cannot be projected to `reject`."""

    def __init__(
        self,
        writer: ProjectionWriter,
        service: str,
        reject: RejectHook,
        only_store: str | None = None,
    ) -> None:
        self.writer = writer
        self._inserts: Coalesced = CoalescedWrites(writer.repo.insert_confirmed)
        self._views: Coalesced = CoalescedWrites(writer.write_views)
        self.service = service
        self.reject = reject
        self.only_store = only_store
        self.applied = 0

    async def __call__(self, records: Sequence[Record]) -> tuple[int, Exception | None]:
        """One partition's records, in order: the next offset to read, and the failure that
        stopped it there (if one did). A run of new bookings is inserted in one write, a run
        of availability views written in one Redis call."""
        run: list[tuple[Record, Envelope[EventPayload]]] = []
        run_writes: Coalesced | None = None
        for record in records:
            first = run[0][0] if run else record
            try:
                envelope = self._decode(record)
                if envelope is None:
                    continue  # not ours to project
                writes = self._coalesced(record, envelope)
                if run and writes is not run_writes:
                    await self._write_run(run, run_writes)
                    first = record
                if writes is not None and isinstance(envelope, Envelope):
                    run.append((record, envelope))
                    run_writes = writes
                elif isinstance(envelope, DecodeError):
                    await self.reject(record, envelope)
                else:
                    await self._apply(record, envelope)
            except Exception as exc:
                return first.offset, exc
        try:
            await self._write_run(run, run_writes)
        except Exception as exc:
            return run[0][0].offset, exc
        return records[-1].offset + 1, None

    def _decode(self, record: Record) -> Envelope[EventPayload] | DecodeError | None:
        """The event; its decoding error; or None when it is not ours to project."""
        if self.only_store is not None and store_of_key(record.topic, record.key) != (
            self.only_store
        ):
            return None
        if record.value is None and local_topic_name(record.topic) == AVAILABILITY:
            return None  # a retired day's view (its Redis copy expired long since)
        try:
            envelope = decode(record.value, record.headers)
        except DecodeError as exc:
            return exc
        count_consumed(self.service, record.topic, envelope.type)
        return envelope

    def _coalesced(
        self, record: Record, envelope: Envelope[EventPayload] | DecodeError
    ) -> Coalesced | None:
        """The shared write that takes this record with its neighbours, if one does."""
        if isinstance(envelope, DecodeError):
            return None
        topic = local_topic_name(record.topic)
        if topic == AVAILABILITY:
            return self._views
        if topic == BOOKING_EVENTS and self.writer.repo.insertable(envelope):
            return self._inserts
        return None

    async def _write_run(
        self, run: list[tuple[Record, Envelope[EventPayload]]], writes: Coalesced | None
    ) -> None:
        if not run or writes is None:
            return
        results = await writes([envelope for _, envelope in run])
        for (record, envelope), result in zip(run, results, strict=True):
            await self._settled(record, envelope, result)
        run.clear()

    async def _apply(self, record: Record, envelope: Envelope[EventPayload]) -> None:
        result = await self.writer.apply(local_topic_name(record.topic), envelope)
        await self._settled(record, envelope, result)

    async def _settled(self, record: Record, envelope: Envelope[EventPayload], result: str) -> None:
        if result == "conflict":
            await self.reject(
                record, Unprojectable(f"idempotency key of {envelope.type} already taken")
            )
        elif result in ("applied", "written"):
            self.applied += 1


@dataclass
class BatchResult:
    commit: dict[TopicPartition, int] = field(default_factory=dict)
    failed: list[tuple[TopicPartition, int, Exception]] = field(default_factory=list)


PartitionHandler = Callable[[Sequence[Record]], Awaitable[tuple[int, Exception | None]]]


async def apply_batch(batch: Batch, handle: PartitionHandler) -> BatchResult:
    """Records of one partition in order, partitions concurrently. A partition stops at its
    first failure: `commit` holds the next offset to read per partition."""
    result = BatchResult()
    partitions = [(tp, records) for tp, records in batch.items() if records]
    outcomes = await asyncio.gather(*(handle(records) for _, records in partitions))
    for (tp, records), (next_offset, exc) in zip(partitions, outcomes, strict=True):
        if next_offset > records[0].offset:
            result.commit[tp] = next_offset
        if exc is not None:
            result.failed.append((tp, next_offset, exc))
    return result


def oldest_age_s(batch: Batch, now: dt.datetime) -> float:
    """How long before `now` the batch's oldest record was written: how far behind we are."""
    oldest_ms = min(records[0].timestamp for records in batch.values() if records)
    return now.timestamp() - oldest_ms / 1000


async def projected_partitions(settings: ServiceSettings) -> list[TopicPartition]:
    """Every partition of every topic the projector reads (mirrored copies included)."""
    pattern = re.compile(TOPIC_PATTERN)
    admin = make_admin(settings)
    await admin.start()
    try:
        names = sorted(t for t in await admin.list_topics() if pattern.match(t))
        described = await admin.describe_topics(names) if names else []
    finally:
        await admin.close()
    return [
        TopicPartition(t["topic"], p["partition"])
        for t in described
        for p in sorted(t["partitions"], key=lambda p: int(p["partition"]))
    ]


REFILL_CHECK_S = 5.0


class ViewsRefill:
    """Replays an assigned partition from its start when Redis holds no mark for it: on every
    new assignment, then every `every_s` (Redis may restart under a running projector).

    Marks live beside the views, so whatever loses the views loses the marks. The start
    offsets are committed before the mark is set: a crash in between replays once more, never
    less. Each instance checks the partitions it owns, so the replay follows the partitions
    through rebalances and over several instances."""

    def __init__(self, views: RedisViews, clock: Clock, every_s: float = REFILL_CHECK_S) -> None:
        self.views = views
        self.clock = clock
        self.every_s = every_s
        self._checked: frozenset[TopicPartition] = frozenset()
        self._next_check = 0.0

    async def check(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        """The partitions sent back to their start (none, almost always)."""
        assigned = frozenset(consumer.assignment())
        if assigned == self._checked and time.monotonic() < self._next_check:
            return []
        names = {f"{tp.topic}:{tp.partition}": tp for tp in assigned}
        try:
            lost = [names[name] for name in await self.views.unfilled(sorted(names))]
        except (RedisError, OSError) as exc:  # Redis down: the writes wait for it too
            log.warning("views_refill_check_failed", error=repr(exc))
            return []
        if lost:
            starts = await consumer.beginning_offsets(lost)
            for tp in lost:
                consumer.seek(tp, starts[tp])
            try:
                await consumer.commit(starts)
            except Exception as exc:  # rebalanced meanwhile: the next owner checks again
                log.warning("views_refill_commit_failed", error=repr(exc))
                self._checked = frozenset()
                return lost
            await self.views.mark_filled([f"{tp.topic}:{tp.partition}" for tp in lost],
                                         self.clock.now())  # fmt: skip
            log.warning(
                "views_replayed_from_start",
                partitions=[f"{tp.topic}:{tp.partition}" for tp in lost],
                reason="Redis holds no mark for them (first start, restart or flush)",
            )
        self._checked, self._next_check = assigned, time.monotonic() + self.every_s
        return lost


class Projector:
    """The live projector: a group consumer task inside the projector process. The process
    runs two (`projectors()`): Redis views must never queue behind MongoDB writes."""

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        group_id: str = GROUP_ID,
        pattern: str = TOPIC_PATTERN,
        auto_offset_reset: str = "earliest",
        clock: Clock | None = None,
        linger_s: float = 0.0,
        yielding: Yielding | None = None,
        refill_every_s: float | None = None,
    ) -> None:
        self.settings = settings
        # Views projector: replay partitions whose views Redis lost (`ViewsRefill`); None: off.
        self.refill_every_s = refill_every_s
        self._refill: ViewsRefill | None = None
        self.linger_s = linger_s  # see optisync_common.kafka.linger
        self.yielding = yielding  # the process's CPU priority, told how fresh each batch is
        self.group_id = group_id
        self.pattern = pattern
        self.auto_offset_reset = auto_offset_reset
        self.clock: Clock = clock or SystemClock()
        self._resources: Resources | None = None
        self._handler: RecordHandler | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._assigned = asyncio.Event()
        # next offset to apply per partition, as far as this instance got
        self.positions: dict[TopicPartition, int] = {}

    async def start(self, resources: Resources) -> None:
        if resources.redis is None:
            raise NotReady("the projector needs Redis")
        self._resources = resources
        repo = BookingRepository(resources.db)
        await repo.ensure_indexes()
        views = RedisViews(resources.redis, self.settings.redis_prefix)
        writer = ProjectionWriter(repo, views, self.clock)
        if self.refill_every_s is not None:
            self._refill = ViewsRefill(views, self.clock, self.refill_every_s)
        self._handler = RecordHandler(writer, self.settings.service_name, self._reject)
        self._task = asyncio.create_task(self._run(), name=f"projector-{self.group_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def check(self) -> None:
        """Readiness: the consumer task runs and is connected."""
        if self._task is None or self._task.done() or self._consumer is None:
            raise NotReady("projector consumer is not running")

    async def wait_assigned(self, within_s: float = 30.0) -> None:
        """Wait until the group gave us partitions and their start positions are known
        (tests publish only after this, so a `latest` reset cannot skip their records)."""
        await asyncio.wait_for(self._assigned.wait(), within_s)

    async def _run(self) -> None:
        def make() -> AIOKafkaConsumer:
            return make_consumer(
                self.settings,
                group_id=self.group_id,
                pattern=self.pattern,
                auto_offset_reset=self.auto_offset_reset,
                client_id=f"{self.settings.service_name}-projector",
            )

        async def consume(consumer: AIOKafkaConsumer) -> None:
            self._consumer = consumer
            await self._consume(consumer)

        def disconnected() -> None:
            self._consumer = None
            self._assigned.clear()

        await consume_forever(make, consume, what="projector", on_disconnect=disconnected)

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        assert self._handler is not None, "start() first"
        backoff = 0.2
        while True:
            if self._refill is not None and consumer.assignment():
                await self._refill.check(consumer)
            batch: Batch = await consumer.getmany(timeout_ms=500, max_records=1000)
            if not self._assigned.is_set() and consumer.assignment():
                for tp in consumer.assignment():
                    await consumer.position(tp)  # resolves the reset before anyone publishes
                self._assigned.set()
            if not batch:
                continue
            age = oldest_age_s(batch, self.clock.now())
            BATCH_AGE.labels(self.group_id).observe(age)
            if self.yielding is not None:
                self.yielding.observe(self.group_id, age)
            result = await apply_batch(batch, self._handler)
            self.positions.update(result.commit)
            if result.commit:
                try:
                    await consumer.commit(result.commit)
                except Exception as exc:  # rebalanced meanwhile: the new owner re-applies
                    log.warning("projector_commit_failed", error=repr(exc))
            if result.failed:
                for tp, offset, error in result.failed:
                    log.error(
                        "projection_failed", topic=tp.topic, partition=tp.partition,
                        offset=offset, error=repr(error), retry_in=backoff,
                    )  # fmt: skip
                    consumer.seek(tp, offset)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            else:
                backoff = 0.2
                await linger(batch, self.linger_s)

    async def _reject(self, record: Record, error: Exception) -> None:
        try:
            dlq = dlq_topic_for(record.topic)
        except UnknownTopicError:
            log.error(
                "projection_skipped", topic=record.topic, partition=record.partition,
                offset=record.offset, error=str(error),
            )  # fmt: skip
            return
        assert self._resources is not None
        await dead_letter(
            self._resources.publisher,
            record,
            service=self.settings.service_name,
            region=self.settings.region,
            error=error,
            now=self.clock.now(),
        )
        log.warning("projection_dead_lettered", topic=record.topic, dlq=dlq, error=str(error))


def projectors(
    settings: ServiceSettings, linger_s: float = 0.0, yielding: Yielding | None = None
) -> list[Projector]:
    """Booking documents (MongoDB) and views (Redis: availability, store catalogs), each with
    its own consumer group, so a slow document store never delays what availability shows.
    Both tell `yielding` how fresh their batches are: the process yields while both keep up."""
    return [
        Projector(settings, group_id=GROUP_ID, pattern=DOCUMENTS_PATTERN, linger_s=linger_s,
                  yielding=yielding),
        # Redis keeps no copy on disk (a projection): the views come back from the topics.
        Projector(settings, group_id=VIEWS_GROUP_ID, pattern=VIEWS_PATTERN, linger_s=linger_s,
                  yielding=yielding, refill_every_s=REFILL_CHECK_S),
    ]  # fmt: skip


@dataclass
class RebuildReport:
    records: int = 0
    applied: int = 0
    skipped: list[str] = field(default_factory=list)
    dropped_documents: int = 0
    dropped_keys: int = 0


class ProjectorRunning(RuntimeError):
    """The live projector must be stopped before a rebuild."""


async def rebuild(
    settings: ServiceSettings,
    *,
    store_id: str | None = None,
    clock: Clock | None = None,
    out: Callable[[str], Any] = print,
    progress_every_s: float = 2.0,
    live_groups: Sequence[str] = (GROUP_ID, VIEWS_GROUP_ID),
) -> RebuildReport:
    """Drop the projections (of one store, or all) and replay the topics from the beginning.

    Refused while the live projector runs (`live_groups` have members): it would write
    between the drop and the replay, and a change it applied to a document the replay had
    not written yet was lost (a cancellation found no booking), or was undone by an older
    event the replay applied after it. Started again afterwards, the live projector goes on
    from its committed positions, re-applying what the replay already did, which changes
    nothing.
    """
    running = await active_groups(settings, list(live_groups))
    if running:
        raise ProjectorRunning(
            f"the booking projector is running (consumer groups {', '.join(running)} have "
            "members): stop it, rebuild, then start it again"
        )
    report = RebuildReport()
    async with open_resources(settings, kafka=False) as res:
        assert res.redis is not None
        repo = BookingRepository(res.db)
        views = RedisViews(res.redis, settings.redis_prefix)
        scope = f"store {store_id}" if store_id else "every store"
        report.dropped_documents = await repo.drop(store_id)
        report.dropped_keys = await views.drop(store_id)
        await repo.ensure_indexes()
        out(
            f"[rebuild] dropped {report.dropped_documents} booking documents and "
            f"{report.dropped_keys} Redis keys of {scope}"
        )

        async def skip(record: Record, error: Exception) -> None:
            report.skipped.append(f"{record.topic}:{record.partition}:{record.offset}: {error}")

        writer = ProjectionWriter(repo, views, clock or SystemClock())
        handler = RecordHandler(writer, settings.service_name, skip, only_store=store_id)
        partitions = await projected_partitions(settings)
        consumer = make_consumer(settings, group_id=None)
        await consumer.start()
        try:
            report.records = await _replay(consumer, partitions, handler, out, progress_every_s)
        finally:
            await consumer.stop()
        report.applied = handler.applied
        if store_id is None:  # every view is back: nothing for the views projector to refill
            names = [f"{tp.topic}:{tp.partition}" for tp in partitions]
            await views.mark_filled(names, (clock or SystemClock()).now())
    out(
        f"[rebuild] done: {report.records} records read, {report.applied} applied, "
        f"{len(report.skipped)} skipped"
    )
    for line in report.skipped[:20]:
        out(f"[rebuild]   skipped {line}")
    return report


async def _replay(
    consumer: AIOKafkaConsumer,
    partitions: Iterable[TopicPartition],
    handler: RecordHandler,
    out: Callable[[str], Any],
    progress_every_s: float,
) -> int:
    tps = list(partitions)
    if not tps:
        return 0
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    begin = await consumer.beginning_offsets(tps)
    end = await consumer.end_offsets(tps)
    remaining = {tp for tp in tps if end[tp] > begin[tp]}
    total = sum(end[tp] - begin[tp] for tp in tps)
    consumer.pause(*(set(tps) - remaining))
    read, last_report = 0, time.monotonic()
    out(f"[rebuild] replaying {total} records from {len(tps)} partitions")
    while remaining:
        batch: Batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=2000)
        # Records appended after the snapshot are left to the live projector.
        batch = {tp: [r for r in rs if r.offset < end[tp]] for tp, rs in batch.items()}
        result = await apply_batch(batch, handler)
        if result.failed:
            tp, offset, exc = result.failed[0]
            raise RuntimeError(f"rebuild failed at {tp.topic}:{tp.partition}@{offset}") from exc
        read += sum(len(rs) for rs in batch.values())
        for tp in list(remaining):
            if await consumer.position(tp) >= end[tp]:
                remaining.discard(tp)
                consumer.pause(tp)
        if time.monotonic() - last_report >= progress_every_s:
            out(f"[rebuild] {read}/{total} records, {handler.applied} applied")
            last_report = time.monotonic()
    return read
