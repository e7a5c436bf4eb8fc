"""Exactly-once stream processing on plain aiokafka: consume → decide → produce.

Why not a faust agent: under steady load (100 commands/s) faust's agent over two topics held
decisions back for seconds, some past two minutes, while bursts went through; the loop here is
small enough to reason about and batches what faust did message by message.

The shape is Kafka Streams' exactly-once:

* Inputs are co-partitioned topics; partition number `p` of every input belongs to one task
  with its own key-value tables (`ChangelogTable`), so a store's commands and roster events
  meet the same state.
* Tasks form `task_groups` fixed groups (task `p` is in group `p % task_groups`), and the
  consumer group's assignor (`task_group_assignor`) hands out whole groups, so one instance
  owns all of a group's tasks. A group decides the batches of all its tasks together and
  commits them in one Kafka transaction: the outputs, the table changes and the input
  positions commit together or not at all. Changes and positions both go to the compacted
  `<app_id>-state-changelog`, partition `p` of each task, keyed `<table>/<key>` and
  `_positions/<topic>`.
* One transaction per group rather than per task: a transaction's cost (three round trips,
  a commit marker per partition, three writes to the transaction log) hardly depends on how
  many records it carries, and with a transaction per task each carried about two commands
  at 500 bookings/s.
* A group's transactions run on its own transactional producers (`<app_id>-tg<G>-<g>-<k>`),
  which the new owner of the group starts first: that fences the previous owner and aborts
  its open transaction. (Per group, not per instance: aiokafka's offset commits carry no
  consumer generation, so only the transactional id can fence a zombie that lost the group.)
  The group takes turns between two producers, so its next transaction is decided and
  produced while the previous one commits (it commits only after that one, and is aborted
  with it if that commit fails: it was decided on its state). One id could not do that, and
  even back to back its next transaction would meet CONCURRENT_TRANSACTIONS while the broker
  still writes the previous one's commit markers (KAFKA-5477) and wait out a retry.
* Each task's changelog also records which family of ids last committed to it
  (`_layout/ids`, the group count). A new owner of another group count fences that family's
  ids for its tasks (`_fence_stale_layouts`): a transaction that a crashed instance of the
  old count left open would otherwise hold read-committed readers of its partitions until the
  broker's transaction timeout. The restored state names those ids, so the tasks are restored
  again after the fence, for what the old count committed until the fence took its ids.
* Positions live in the state changelog, not in the consumer group, because a transaction
  that commits offsets to the group costs two more sequential round trips to the broker
  (AddOffsetsToTxn, TxnOffsetCommit) and one more commit marker, about 40% of its requests.
  The group's offsets are still committed every few seconds, after the fact, so that lag
  shows in the usual tools; a task resumes from them only where its changelog holds no
  position yet (data of versions that committed offsets in the transaction).
* Groups run as independent pipelines: while one waits for its commit, others decide, and a
  group's next batch is whatever arrived meanwhile (batches grow with load, latency stays
  near one commit when idle), up to `max_batch` records: a backlog is worked off in
  transactions of bounded length, each starting at the next task. A task with a long queue
  pauses its partitions (backpressure). The price of sharing transactions: a long batch of
  one task (a roster change that moves many bookings) delays its group's other tasks by as
  much.
* When a group is assigned, its producers start first, then its tasks' tables and positions
  are rebuilt from the changelogs (read committed) and their inputs are sought to those
  positions, so state and input always match. A failed transaction rebuilds the group the
  same way.
* With `punctuate_s`, a task that got no records for that long has its handler called with
  none, so time-driven decisions (an offer's hold lapsing) happen without new input;
  whatever that call changes commits in the group's next transaction.
* With `state_dir` (and rocksdict installed), committed transactions' changelog records also
  go to a local RocksDB copy with a checkpoint (`optisync_common.localstate`), so a restart or
  a failed transaction loads the copy and replays only the changelog after the checkpoint
  instead of all of it. The copy is written every `local_flush_s` (the last value of each key
  since the previous write: a store-day changes with every booking), on stop and before a
  restore. The tables themselves stay in memory for the decisions.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import math
import random
import time
from collections import deque
from collections.abc import (
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
)
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2
from aiokafka.structs import ConsumerRecord, TopicPartition
from prometheus_client import Counter, Histogram

from optisync_common.kafka import linger
from optisync_common.localstate import TOMBSTONE_RETENTION_MS, Checkpoint, LocalState
from optisync_common.logging import get_logger
from optisync_common.topic_ids import topic_ids
from optisync_common.topics import ensure_internal_topics

log = get_logger(__name__)

# The span over which a task group's input rate is measured (see `txn_interval_min_rate`):
# long enough to hold several transactions, short enough to follow a burst.
RATE_WINDOW_S = 0.1

BATCH_RECORDS = Histogram(
    "optisync_stream_batch_records",
    "Input records per task transaction",
    ["app"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
TXN_SECONDS = Histogram(
    "optisync_stream_transaction_seconds",
    "Decide + produce + commit time of one task transaction",
    ["app"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
TASK_RESTORES = Counter(
    "optisync_stream_task_restores_total", "Tasks rebuilt from their changelogs", ["app", "why"]
)
RESTORE_SECONDS = Histogram(
    "optisync_stream_restore_seconds",
    "Time to rebuild assigned tasks' tables (local copy, then the changelog after it)",
    ["app"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120),
)
RESTORED_RECORDS = Counter(
    "optisync_stream_restored_records_total",
    "Records a restore applied, from the changelog topic or the local copy",
    ["app", "source"],
)

Headers = Sequence[tuple[str, bytes]]
# Compacted; tombstones kept as long as local copies' checkpoints assume (`localstate`).
STATE_TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "delete.retention.ms": str(TOMBSTONE_RETENTION_MS),
}
COMMIT_SEND_TURNS = 6  # loop turns: aiokafka 0.14 takes 3 (`test_txstream` counts them)
POSITIONS = "_positions"  # the state changelog's "table" of a task's input positions
LAYOUT = "_layout"  # ... and of which transactional ids write the task (`_fence_stale_layouts`)


@dataclass(frozen=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    partition: int | None = None  # None: by the key's hash


_ABSENT = object()  # a key a table did not hold


class ChangelogTable(MutableMapping[str, Any]):
    """A dict that remembers which keys changed since the last `take_changes()`.

    Values are JSON types. As with any changelog-backed table, only assignment records a
    change: mutate a copy of a value, then assign it back.
    """

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}
        self._dirty: set[str] = set()
        # While `all_or_nothing` runs: each changed key's value (and dirtiness) before it.
        self._undo: dict[str, tuple[Any, bool]] | None = None

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if self._undo is not None:
            self._remember(key)
        self._data[key] = value
        self._dirty.add(key)

    def __delitem__(self, key: str) -> None:
        if self._undo is not None:
            self._remember(key)
        del self._data[key]
        self._dirty.add(key)

    def _remember(self, key: str) -> None:
        assert self._undo is not None
        if key not in self._undo:
            self._undo[key] = (self._data.get(key, _ABSENT), key in self._dirty)

    def _roll_back(self) -> None:
        for key, (value, dirty) in (self._undo or {}).items():
            if value is _ABSENT:
                self._data.pop(key, None)
            else:
                self._data[key] = value
            if not dirty:
                self._dirty.discard(key)
        self._undo = None

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def restore(self, key: str, value: Any | None) -> None:
        """Apply a changelog record (None = tombstone) without marking it changed."""
        if value is None:
            self._data.pop(key, None)
        else:
            self._data[key] = value

    def reorder(self, key: Callable[[tuple[str, Any]], Any]) -> None:
        """Put the entries in `key` order (a change, as ever, moves its key to the end): a
        restore loads a local copy in key order, not in the order the keys were written."""
        self._data = dict(sorted(self._data.items(), key=key))

    @property
    def changed(self) -> bool:
        return bool(self._dirty)

    def take_changes(self) -> list[tuple[str, Any | None]]:
        changes = [(k, self._data.get(k)) for k in sorted(self._dirty)]
        self._dirty.clear()
        return changes


Tables = Mapping[str, ChangelogTable]


# The largest record a transaction may write: under the broker's and the producer's 1 MiB
# limit, with room for the key and headers. A larger one would fail its transaction, and the
# group would recover and fail on it again for ever, all its tasks standing still.
MAX_RECORD_BYTES = 900_000


class RecordTooLarge(ValueError):
    pass


@contextlib.contextmanager
def all_or_nothing(tables: Tables) -> Iterator[None]:
    """Every table change made inside, or none of them: an exception rolls the tables back
    to where they were (a record dead-lettered halfway must leave nothing behind) and is
    raised again, and so is a change whose value would be over `MAX_RECORD_BYTES` in the
    changelog (RecordTooLarge). Not reentrant."""
    for table in tables.values():
        table._undo = {}
    try:
        yield
        _refuse_oversized(tables)
    except BaseException:
        for table in tables.values():
            table._roll_back()
        raise
    for table in tables.values():
        table._undo = None


def refuse_oversized(size: int, what: str) -> None:
    """RecordTooLarge for a record of `size` bytes over `MAX_RECORD_BYTES`."""
    if size > MAX_RECORD_BYTES:
        raise RecordTooLarge(f"{what} would be over {MAX_RECORD_BYTES} bytes")


def _refuse_oversized(tables: Tables) -> None:
    for name, table in tables.items():
        for key in table._undo or ():
            value = table._data.get(key)
            if value is not None:
                refuse_oversized(len(orjson.dumps(value)), f"{name}/{key}")


# Decides one task's batch: records in arrival order per input partition; mutates the tables
# and returns what to publish. It must not raise for one bad record (dead-letter it instead).
# An empty batch is a punctuation: only time has passed.
BatchHandler = Callable[[int, Sequence[ConsumerRecord[bytes, bytes]], Tables], list[Output]]


def _out_of_the_collectors_reach() -> None:
    """Freeze what a restore loaded: the tables stay until their tasks move, and every full
    collection would walk them again (the booking processor's restored store-days hold a list
    per booking). Their values are plain JSON, so what a change replaces is still freed by its
    reference count. Frozen cycles are not: the previous restore's are unfrozen and collected
    first, so that only what lived through one restore waits for the next."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def default_partition(key: bytes | None, partitions: Sequence[int]) -> int:
    """Where `producer.send` would put a record without a partition: the Java client's
    murmur2 of the key over the sorted partitions, or any partition for no key."""
    if key is None:
        return random.choice(partitions)
    return partitions[_murmur2_index(key, len(partitions))]


@lru_cache(maxsize=1 << 16)  # keys are mostly store ids, and murmur2 is pure Python here
def _murmur2_index(key: bytes, count: int) -> int:
    return int(murmur2(key) & 0x7FFFFFFF) % count


def _destination(output: Output, partitions: Mapping[str, Sequence[int]]) -> TopicPartition:
    if output.partition is not None:
        return TopicPartition(output.topic, output.partition)
    return TopicPartition(output.topic, default_partition(output.key, partitions[output.topic]))


Record = tuple[TopicPartition, bytes | None, bytes | None, Headers]
Records = list[ConsumerRecord[bytes, bytes]]
StateRecord = tuple[bytes, bytes | None]  # a state changelog record: key, value or tombstone


@dataclass
class _StateWrites:
    """A transaction's records to one task's state changelog partition, kept for the local
    copy until the transaction commits."""

    records: list[StateRecord] = field(default_factory=list)
    resume_at: int | None = None  # the lowest base offset they were written at


@dataclass
class _Unsaved:
    """Committed state records of one task not yet in the local copy: the last value per key,
    and where a replay must resume to rebuild what the copy would then lack."""

    records: dict[bytes, bytes | None] = field(default_factory=dict)
    resume_at: int = 0


async def _send_batched(
    producer: AIOKafkaProducer, records: Sequence[Record]
) -> list[tuple[TopicPartition, asyncio.Future[Any]]]:
    """Queue the records as one batch per partition, in order within each partition.

    The same wire result as a `send` per record (the producer sends at most one batch per
    partition in a request either way), without `send`'s per-record coroutine, metadata
    check and delivery future, which cost more than the records' encoding. Each batch's
    future gives its base offset.
    """
    batches: dict[TopicPartition, Any] = {}
    futures = []
    for tp, key, value, headers in records:
        batch = batches.get(tp)
        if batch is None:
            batch = batches[tp] = producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None, headers=list(headers)) is None:
            # Full: queue it (a second batch of a partition waits for the first to drain).
            futures.append((tp, await producer.send_batch(batch, tp.topic, partition=tp.partition)))
            batch = batches[tp] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None, headers=list(headers)) is None:
                raise ValueError(f"a record for {tp} is larger than a whole batch")
    for tp, batch in batches.items():
        futures.append((tp, await producer.send_batch(batch, tp.topic, partition=tp.partition)))
    return futures


PRODUCERS_PER_GROUP = 2  # taken in turns: see the module docstring


@dataclass
class _Task:
    partition: int
    tables: dict[str, ChangelogTable] = field(default_factory=dict)
    queue: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = field(default_factory=dict)
    positions: dict[TopicPartition, int] = field(default_factory=dict)  # next input offsets
    paused: bool = False
    layout: str | None = None  # the last committed writer's `TransactionalStreamProcessor.layout`
    restored_state: bool = False  # its changelog held anything
    handled_at: float = field(default_factory=time.monotonic)  # last handler call (punctuation)

    def queued(self) -> int:
        return sum(len(records) for records in self.queue.values())

    def reset(self, tables: Iterable[str]) -> None:
        """Empty tables and no restored state: before a restore."""
        self.tables = {name: ChangelogTable() for name in tables}
        self.positions = {}
        self.layout, self.restored_state = None, False


@dataclass
class _Group:
    index: int
    producers: list[AIOKafkaProducer]
    tasks: dict[int, _Task] = field(default_factory=dict)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    worker: asyncio.Task[None] | None = None
    stopping: bool = False
    recovering: bool = True  # records fetched before its seek must not reach the queues
    turn: int = 0
    committing: asyncio.Task[None] | None = None  # the previous transaction's commit
    started_at: float = -math.inf  # when its last transaction's batch was taken (monotonic)
    # (when taken, records) of its batches over the last RATE_WINDOW_S: its input rate
    recent: deque[tuple[float, int]] = field(default_factory=deque)

    def input_rate(self, now: float) -> float:
        """Records a second the group took over the last RATE_WINDOW_S."""
        while self.recent and self.recent[0][0] <= now - RATE_WINDOW_S:
            self.recent.popleft()
        return sum(records for _, records in self.recent) / RATE_WINDOW_S

    @property
    def producer(self) -> AIOKafkaProducer:
        """The producer of the next transaction."""
        return self.producers[self.turn % len(self.producers)]


class TransactionalStreamProcessor:
    def __init__(
        self,
        *,
        bootstrap: str,
        app_id: str,
        inputs: Sequence[str],
        tables: Sequence[str],
        partitions: int,
        handler: BatchHandler,
        max_batch: int = 500,
        session_timeout_ms: int = 10000,
        heartbeat_interval_ms: int = 2000,
        punctuate_s: float | None = None,
        task_groups: int = 1,
        linger_s: float = 0.0,
        txn_interval_s: float = 0.0,
        txn_interval_min_rate: float = 0.0,
        group_commit_interval_s: float = 5.0,
        state_dir: Path | None = None,
        local_flush_s: float = 1.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.app_id = app_id
        self.inputs = list(inputs)
        if {POSITIONS, LAYOUT} & set(tables):
            raise ValueError(f"{POSITIONS!r} and {LAYOUT!r} are the changelog's own names")
        if not 1 <= task_groups <= partitions:
            raise ValueError(f"task_groups must be 1 to {partitions} (one per partition)")
        self.table_names = list(tables)
        self.partitions = partitions
        self.handler = handler
        self.max_batch = max_batch
        self.punctuate_s = punctuate_s
        # The most instances that share the work; each transaction carries a group's tasks.
        self.task_groups = task_groups
        self._session_timeout_ms = session_timeout_ms
        self.linger_s = linger_s  # see optisync_common.kafka.linger
        # The least time between the starts of a group's transactions: under load, fewer and
        # fuller transactions, each costing the broker and both ends a round of requests.
        self.txn_interval_s = txn_interval_s
        # ...but only while the group takes at least this many records a second: below that,
        # each transaction would carry a record or two anyway, and the wait is pure latency.
        self.txn_interval_min_rate = txn_interval_min_rate
        self._heartbeat_interval_ms = heartbeat_interval_ms
        self._consumer: AIOKafkaConsumer | None = None
        self._tasks: dict[int, _Task] = {}
        self._groups: dict[int, _Group] = {}
        self._fetch_task: asyncio.Task[None] | None = None
        self._group_commit_interval_s = group_commit_interval_s
        self._group_commits: asyncio.Task[None] | None = None
        self._assigned_once = False
        self._crashed = False
        self._state_dir = state_dir
        self._local: LocalState | None = None  # opened in start()
        self._cluster_id = ""  # which cluster the local copy's checkpoints belong to
        self._state_topic_id = ""  # ... and which incarnation of the state topic (at restores)
        self._local_flush_s = local_flush_s
        self._unsaved: dict[int, _Unsaved] = {}
        self._local_flushes: asyncio.Task[None] | None = None

    @property
    def state_topic(self) -> str:
        """Where every table's changes go, keyed `<table>/<key>`: one partition per task in
        each transaction, not one per changed table (each partition costs the broker a
        commit marker and the producer a request)."""
        return f"{self.app_id}-state-changelog"

    def changelog_topic(self, table: str) -> str:
        """A table's own changelog, as written before `state_topic`: still read on restore
        (before `state_topic`, which supersedes it), never written."""
        return f"{self.app_id}-{table}-changelog"

    def group_of(self, partition: int) -> int:
        return partition % self.task_groups

    @property
    def layout(self) -> str:
        """Which family of transactional ids writes the tasks (the group count)."""
        return f"tg{self.task_groups}"

    def transactional_id(self, group: int, producer: int) -> str:
        # The group count is in the id: groups of another count are other sets of tasks.
        return f"{self.app_id}-{self.layout}-{group}-{producer}"

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await ensure_internal_topics(
            self.bootstrap,
            [(self.state_topic, self.partitions, STATE_TOPIC_CONFIG)],
        )
        if self._state_dir is not None:
            self._local = LocalState.open(self._state_dir / self.app_id)
            self._cluster_id = await _cluster_id(self.bootstrap) if self._local else ""
        # aiokafka clients bind to the running loop, so they are made here, not in __init__.
        self._consumer = consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.app_id}-consumer",
            group_id=self.app_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=self._heartbeat_interval_ms,
            partition_assignment_strategy=(task_group_assignor(self.task_groups),),
        )
        consumer.subscribe(self.inputs, listener=_Listener(self))
        await consumer.start()
        self._fetch_task = asyncio.create_task(self._fetch(), name=f"{self.app_id}-fetch")
        self._group_commits = asyncio.create_task(
            self._commit_group_offsets(), name=f"{self.app_id}-group-commits"
        )
        if self._local is not None:
            self._local_flushes = asyncio.create_task(
                self._flush_local_periodically(), name=f"{self.app_id}-local-flushes"
            )

    async def stop(self) -> None:
        for background in (self._fetch_task, self._group_commits, self._local_flushes):
            if background is not None:
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background
        await self._drop_groups(list(self._groups))
        if self._consumer is not None:
            await self._consumer.stop()
        self._flush_local()  # what the last commits changed
        if self._local is not None:
            self._local.close()
            self._local = None

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("stream processor not started")
        return self._consumer

    @property
    def running(self) -> bool:
        return self._fetch_task is not None and not self._fetch_task.done()

    @property
    def ready(self) -> bool:
        """Running and holding restored tasks (or told it has none)."""
        return self.running and self._assigned_once and not self._crashed

    @property
    def failed(self) -> bool:
        """A task group crashed, or taking on tasks failed: its tasks stand still until the
        process restarts (the liveness probe's cue: readiness only stops traffic)."""
        return self._crashed

    def tables(self, partition: int) -> Tables | None:
        """The live tables of a task this instance owns (for tests and diagnostics)."""
        task = self._tasks.get(partition)
        return task.tables if task else None

    # ------------------------------------------------------------------ the pipelines

    async def _fetch(self) -> None:
        """Hands fetched records to their task's queue; pauses a task that falls behind."""
        while True:
            try:
                batch = await self.consumer.getmany(timeout_ms=100, max_records=self.max_batch)
            except Exception:  # the broker away for a while: keep trying
                log.exception("stream_fetch_failed", app=self.app_id)
                await asyncio.sleep(1)
                continue
            refetch = False
            for tp, records in batch.items():
                task = self._tasks.get(tp.partition)
                if task is None:
                    # Fetched before the task exists (aiokafka fetches while the rebalance
                    # callback still runs): never skip them, read them again later.
                    with contextlib.suppress(Exception):  # unless no longer ours
                        self.consumer.seek(tp, records[0].offset)
                    refetch = True
                    continue
                group = self._groups[self.group_of(tp.partition)]
                if group.stopping or group.recovering:
                    continue  # a new owner, or the recovery's own seek, re-reads them
                task.queue.setdefault(tp, []).extend(records)
                group.wakeup.set()
                if not task.paused and task.queued() >= 2 * self.max_batch:
                    self.consumer.pause(*self._partitions_of(task.partition))
                    task.paused = True
            if refetch:
                await asyncio.sleep(0.05)
            await linger(batch, self.linger_s)

    async def _work(self, group: _Group) -> None:
        try:
            while not group.stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(group.wakeup.wait(), self.punctuate_s)
                if (wait := self._spacing(group)) > 0:
                    await asyncio.sleep(wait)  # what arrives meanwhile joins this batch
                group.wakeup.clear()
                await self._next_batch(group)
            await self._settle(group)  # the transaction in hand commits (or aborts) first
        except asyncio.CancelledError:
            raise
        except BaseException:
            # Unready and failed from now on (the liveness probe restarts the process):
            # never a silent stall.
            log.exception("stream_group_crashed", app=self.app_id, group=group.index)
            self._crashed = True
            raise

    def _spacing(self, group: _Group) -> float:
        """How much longer the group's next batch waits for inputs to join it: the rest of
        `txn_interval_s` since its last batch, if its input rate is `txn_interval_min_rate`
        or more."""
        now = time.monotonic()
        if self.txn_interval_s <= 0:
            return 0.0
        if self._tracks_rate and group.input_rate(now) < self.txn_interval_min_rate:
            return 0.0
        return group.started_at + self.txn_interval_s - now

    @property
    def _tracks_rate(self) -> bool:
        # Only then is `_Group.recent` read, and so trimmed: else it is not kept at all.
        return self.txn_interval_s > 0 and self.txn_interval_min_rate > 0

    async def _next_batch(self, group: _Group) -> None:
        """Decide what the group's tasks have queued, up to `max_batch` records (or punctuate
        a task that has had nothing for `punctuate_s`), and commit it in one transaction."""
        committed = group.committing is not None and group.committing.done()
        if committed and not await self._settle(group):  # that commit failed meanwhile
            await self._recover(group)
            return
        started = time.perf_counter()
        now = time.monotonic()
        outputs: list[Output] = []
        offsets: dict[TopicPartition, int] = {}
        taken = self._take(group)
        for task in list(group.tasks.values()):
            if task.paused and task.queued() < self.max_batch:
                self.consumer.resume(*self._partitions_of(task.partition))
                task.paused = False
            if group.stopping:
                return
            if records := taken.get(task.partition):
                # Interleave the inputs by time, keeping each partition's own (offset) order.
                ordered = list(heapq.merge(*records.values(), key=lambda r: r.timestamp))
                outputs += self.handler(task.partition, ordered, task.tables)
                offsets.update({tp: rs[-1].offset + 1 for tp, rs in records.items()})
            elif self.punctuate_s is None or now - task.handled_at < self.punctuate_s:
                continue
            else:
                outputs += self.handler(task.partition, [], task.tables)
            task.handled_at = now
        decided = sum(len(rs) for records in taken.values() for rs in records.values())
        if decided and self._tracks_rate:
            group.recent.append((now, decided))
        changed = any(t.changed for task in group.tasks.values() for t in task.tables.values())
        if not (outputs or offsets or changed):
            return  # a punctuation with nothing due: no transaction
        group.started_at = now
        producer = group.producer
        try:
            writes = await self._produce(group, producer, outputs, offsets)
        except Exception:
            log.exception("stream_transaction_failed", app=self.app_id, group=group.index)
            await self._settle(group)
            await self._recover(group)
            return
        # This transaction was decided on the previous one's state: it commits only after it.
        if not await self._settle(group):
            with contextlib.suppress(Exception):
                await producer.abort_transaction()
            await self._recover(group)
            return
        group.turn += 1  # the next transaction goes on the other producer meanwhile
        group.committing = asyncio.create_task(
            self._commit(group, producer, offsets, started, decided, writes),
            name=f"{self.app_id}-tg-{group.index}-commit",
        )
        # aiokafka's sender puts the EndTxn request on the wire a few loop turns after the
        # commit starts: let it go out now, not after the next batch's decisions, which hold
        # the loop for milliseconds (in a slow spell that about doubled the `deliver` hop).
        for _ in range(COMMIT_SEND_TURNS):
            await asyncio.sleep(0)

    async def _settle(self, group: _Group) -> bool:
        """Wait for the commit in flight, if any: False if it failed."""
        commit, group.committing = group.committing, None
        if commit is None:
            return True
        try:
            await commit
        except Exception:
            log.exception("stream_transaction_failed", app=self.app_id, group=group.index)
            return False
        return True

    def _take(self, group: _Group) -> dict[int, dict[TopicPartition, Records]]:
        """Up to `max_batch` queued records, oldest first per input partition, starting at
        the next task each time; the rest stays queued for the next transaction, so one
        transaction's decisions stay short even with a long backlog."""
        budget = self.max_batch
        taken: dict[int, dict[TopicPartition, Records]] = {}
        tasks = list(group.tasks.values())
        start = group.turn % len(tasks) if tasks else 0
        for task in tasks[start:] + tasks[:start]:
            for tp, records in list(task.queue.items()):
                if budget == 0:
                    break
                taken.setdefault(task.partition, {})[tp] = records[:budget]
                if len(records) > budget:
                    task.queue[tp] = records[budget:]
                else:
                    del task.queue[tp]
                budget -= len(taken[task.partition][tp])
        if any(task.queue for task in tasks):
            group.wakeup.set()  # the next transaction takes the rest
        return taken

    def _partitions_of(self, partition: int) -> list[TopicPartition]:
        return [tp for tp in self.consumer.assignment() if tp.partition == partition]

    async def _produce(
        self,
        group: _Group,
        producer: AIOKafkaProducer,
        outputs: list[Output],
        offsets: dict[TopicPartition, int],
    ) -> dict[int, _StateWrites]:
        """Open a transaction with the outputs, every task's table changes and the input
        positions, all sent and acknowledged; aborted if any of that fails. Returns the state
        records per task, for the local copy once the transaction commits."""
        await producer.begin_transaction()
        try:
            keyed_topics = {o.topic for o in outputs if o.partition is None}
            partitions = {t: sorted(await producer.partitions_for(t)) for t in keyed_topics}
            records: list[Record] = [
                (_destination(o, partitions), o.key, o.value, o.headers) for o in outputs
            ]
            writes: dict[int, _StateWrites] = {}

            keep = self._local is not None  # the records are kept only for a local copy

            def state(partition: int, key: str, value: bytes | None) -> None:
                encoded_key = key.encode()
                records.append(
                    (TopicPartition(self.state_topic, partition), encoded_key, value, ())
                )
                batch = writes.setdefault(partition, _StateWrites())
                if keep:
                    batch.records.append((encoded_key, value))

            for task in group.tasks.values():
                if task.layout != self.layout:  # a recovery re-reads it should this abort
                    state(task.partition, f"{LAYOUT}/ids", orjson.dumps(self.layout))
                    task.layout = self.layout
                for name, table in task.tables.items():
                    for key, value in table.take_changes():
                        encoded = None if value is None else orjson.dumps(value)
                        state(task.partition, f"{name}/{key}", encoded)
            for tp, offset in offsets.items():
                state(tp.partition, f"{POSITIONS}/{tp.topic}", orjson.dumps(offset))
            sent = await _send_batched(producer, records)
            written = await asyncio.gather(*(future for _, future in sent))
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.abort_transaction()
            raise
        for (tp, _), metadata in zip(sent, written, strict=True):
            if tp.topic == self.state_topic:
                batch = writes[tp.partition]
                if batch.resume_at is None or metadata.offset < batch.resume_at:
                    batch.resume_at = metadata.offset
        return writes

    async def _commit(
        self,
        group: _Group,
        producer: AIOKafkaProducer,
        offsets: dict[TopicPartition, int],
        started: float,
        decided: int,
        writes: Mapping[int, _StateWrites] | None = None,
    ) -> None:
        try:
            await producer.commit_transaction()
        except BaseException:
            group.wakeup.set()  # the worker recovers the group
            raise
        for tp, offset in offsets.items():
            self._tasks[tp.partition].positions[tp] = offset
        self._save_committed(writes or {})
        if decided:
            BATCH_RECORDS.labels(self.app_id).observe(decided)
            TXN_SECONDS.labels(self.app_id).observe(time.perf_counter() - started)

    def _save_committed(self, writes: Mapping[int, _StateWrites]) -> None:
        """Keep a committed transaction's state records for the local copy's next write: only
        committed ones, so the copy is never ahead of the changelog."""
        if self._local is None:
            return
        for partition, batch in writes.items():
            if batch.resume_at is not None:
                unsaved = self._unsaved.setdefault(partition, _Unsaved())
                unsaved.records.update(batch.records)
                unsaved.resume_at = batch.resume_at  # replaying this transaction suffices

    async def _flush_local_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._local_flush_s)
            for partition in list(self._unsaved):
                # A task at a time: one write of every task's second stalled the loop for
                # 5-25 ms at 500-2,000 commands/s; a task's share takes about a millisecond.
                self._flush_local([partition])
                await asyncio.sleep(0)

    def _flush_local(self, partitions: Iterable[int] | None = None) -> None:
        """Write what these tasks (all by default) committed since their last write."""
        chosen = list(self._unsaved) if partitions is None else partitions
        unsaved = {p: u for p in chosen if (u := self._unsaved.pop(p, None)) is not None}
        self._save_local({p: (u.records.items(), u.resume_at) for p, u in unsaved.items()})

    def _save_local(
        self, saves: Mapping[int, tuple[Iterable[StateRecord], int]], replace: bool = False
    ) -> None:
        if self._local is None:
            return
        now = time.time()
        try:
            for partition, (records, resume_at) in saves.items():
                checkpoint = Checkpoint(
                    self._cluster_id, self.state_topic, resume_at, now, self._state_topic_id
                )
                self._local.save(partition, records, checkpoint, replace=replace)
        except Exception:
            # A later save would move a checkpoint past the records this one missed: stop
            # writing the copy. What it holds stays right up to its checkpoints.
            log.exception("local_state_save_failed", app=self.app_id)
            self._local.close()
            self._local = None

    async def _recover(self, group: _Group) -> None:
        """After a failed transaction: forget the group's uncommitted state and queues, and
        go back to its committed input positions with fresh producers (which also fence)."""
        group.recovering = True
        for task in group.tasks.values():
            task.queue.clear()
        for producer in group.producers:
            with contextlib.suppress(Exception):
                await producer.stop()
        group.producers = await self._start_producers(group.index)
        await self._restore(list(group.tasks))
        await self._seek_to_positions(group)
        TASK_RESTORES.labels(self.app_id, "transaction_failed").inc(len(group.tasks))

    async def _seek_to_positions(self, group: _Group) -> None:
        """Go to the tasks' restored input positions and let fetched records in again."""
        positions = {}
        for task in group.tasks.values():
            for tp in self._partitions_of(task.partition):
                known = task.positions.get(tp)
                # No position in the changelog: data of a version that committed offsets to
                # the group in the transaction (or nothing read yet).
                positions[tp] = known if known is not None else await self.consumer.committed(tp)
        # From the seeks to the end, no await: nothing fetched after a seek may be dropped.
        for tp, offset in positions.items():
            self.consumer.seek(tp, offset or 0)
        for task in group.tasks.values():
            task.queue.clear()
            if task.paused:  # nothing queued now: a paused task would never be woken
                self.consumer.resume(*self._partitions_of(task.partition))
                task.paused = False
        group.recovering = False

    async def _commit_group_offsets(self) -> None:
        """The committed positions to the consumer group now and then: for lag in the usual
        tools, never read back while a position is in the changelog."""
        while True:
            await asyncio.sleep(self._group_commit_interval_s)
            positions = {
                tp: offset
                for group in list(self._groups.values())
                if not group.recovering
                for task in group.tasks.values()
                for tp, offset in task.positions.items()
            }
            if not positions:
                continue
            try:
                await self.consumer.commit(positions)
            except Exception as exc:  # a rebalance in progress: the next round commits
                log.info("stream_group_commit_skipped", app=self.app_id, error=repr(exc))

    # ------------------------------------------------------------------ task movement

    async def _start_producers(self, group: int) -> list[AIOKafkaProducer]:
        producers = []
        for k in range(PRODUCERS_PER_GROUP):
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                client_id=f"{self.app_id}-producer-{group}-{k}",
                transactional_id=self.transactional_id(group, k),
                enable_idempotence=True,
                acks="all",
                # A transaction's records are all sent before the group yields, and none can
                # go out before the AddPartitionsToTxn round trip anyway: lingering only split
                # them over several produce requests (batches whose linger ran out apart).
                linger_ms=0,
                # One batch per partition per transaction. aiokafka sends at most one batch
                # per partition in a request and makes `send` wait while a full batch drains,
                # so with the default 16 KiB a busy task's changelog records went out in a
                # chain of round trips (a quarter of all produce requests at 500 bookings/s).
                max_batch_size=512 * 1024,
                request_timeout_ms=15000,
                # Should a transaction's first request still meet CONCURRENT_TRANSACTIONS
                # (KAFKA-5477), the default 100 ms backoff would be most of its latency.
                retry_backoff_ms=5,
            )
            await producer.start()  # init_transactions: fences the previous owner of this id
            producers.append(producer)
        return producers

    async def _assign(self, partitions: set[int]) -> None:
        """Start a group for the assigned tasks that have none, whole groups only: a group
        that gains a task is dropped and started again with all of its tasks."""
        growing = {self.group_of(p) for p in partitions - set(self._tasks)}
        await self._drop_groups(sorted(growing & set(self._groups)))
        members: dict[int, list[int]] = {}
        for p in sorted(partitions):
            if self.group_of(p) in growing:
                members.setdefault(self.group_of(p), []).append(p)
        # Tasks exist from here on; they queue what is fetched once sought to their restored
        # positions, and are decided from then on.
        for g, tasks in members.items():
            group = self._groups[g] = _Group(g, await self._start_producers(g))
            for p in tasks:
                group.tasks[p] = self._tasks[p] = _Task(p)
        assigned = [p for tasks in members.values() for p in tasks]
        await self._restore(assigned)
        # Only the restored state names the ids to fence, so the fence follows the restore,
        # and the restore is done again after it: what their layout committed past its end,
        # before the fence took them (which completes a commit under way), is state too.
        fenced: set[str] = set()
        restored = [self._tasks[p] for p in assigned]
        while newly_fenced := await self._fence_stale_layouts(restored, fenced):
            fenced |= newly_fenced  # the state may name yet another layout now
            await self._restore(assigned)
        for g in members:
            group = self._groups[g]
            await self._seek_to_positions(group)
            group.worker = asyncio.create_task(self._work(group), name=f"{self.app_id}-tg-{g}")
            group.wakeup.set()  # whatever was queued during the restore
        self._assigned_once = True
        log.info("stream_tasks_assigned", app=self.app_id, partitions=sorted(self._tasks))

    async def _fence_stale_layouts(
        self, tasks: Sequence[_Task], fenced: AbstractSet[str] = frozenset()
    ) -> set[str]:
        """Abort what a crashed instance of another group count (or of the per-task ids of
        earlier versions) left open on these tasks' partitions. Its ids are not ours, so
        starting our producers fenced nothing of it, and until the broker's transaction
        timeout (60 s) read-committed readers of those partitions, the API's replies among
        them, would wait behind it. Returns the ids it fenced (none of `fenced`)."""
        stale = sorted(
            {
                stale_id
                for task in tasks
                for stale_id in stale_transactional_ids(
                    self.app_id, task.partition, task.layout, task.restored_state, self.layout
                )
            }
            - fenced
        )
        if not stale:
            return set()
        log.warning("stream_fencing_other_layout", app=self.app_id, transactional_ids=stale)
        await asyncio.gather(*(self._fence(transactional_id) for transactional_id in stale))
        return set(stale)

    async def _fence(self, transactional_id: str) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.app_id}-fence",
            transactional_id=transactional_id,
            enable_idempotence=True,
            acks="all",
        )
        try:
            await producer.start()  # InitProducerId: bumps the epoch, aborting its transaction
        finally:
            await producer.stop()  # also when the start failed: no client left behind

    async def _drop_groups(self, groups: Sequence[int]) -> None:
        """Let each group finish the batch in hand (its transaction commits or aborts), then
        stop it."""
        for g in groups:
            group = self._groups.pop(g, None)
            if group is None:
                continue
            group.stopping = True
            group.wakeup.set()
            if group.worker is not None:
                with contextlib.suppress(Exception):
                    await group.worker
            for p in group.tasks:
                self._tasks.pop(p, None)
            for producer in group.producers:
                with contextlib.suppress(Exception):
                    await producer.stop()

    async def _replay(
        self,
        reader: AIOKafkaConsumer,
        tps: list[TopicPartition],
        table_and_key: Callable[[str, str], tuple[str, str]],
        resume: Mapping[TopicPartition, int] | None = None,
        replayed: dict[int, list[StateRecord]] | None = None,
    ) -> dict[TopicPartition, int]:
        """Apply changelog partitions to their tasks' tables, from the beginning (or `resume`)
        to their current end; what a resumed partition applies also goes to `replayed`.
        Returns where each partition's replay ended."""
        if not tps:
            return {}
        resume = resume or {}
        reader.assign(tps)
        if fresh := [tp for tp in tps if tp not in resume]:
            await reader.seek_to_beginning(*fresh)
        for tp, offset in resume.items():
            reader.seek(tp, offset)
        ends = await reader.end_offsets(tps)
        count = 0
        pending = {tp for tp in tps if await reader.position(tp) < ends[tp]}
        while pending:
            batch = await reader.getmany(*pending, timeout_ms=200, max_records=5000)
            for tp in pending - batch.keys():
                # Nothing came: a partition that shrank meanwhile (its topic recreated, a wiped
                # broker) now ends lower, and waiting for the old end would never finish.
                ends[tp] = min(ends[tp], (await reader.end_offsets([tp]))[tp])
            for tp, records in batch.items():
                task = self._tasks[tp.partition]
                task.restored_state = True
                for r in records:
                    name, key = table_and_key(tp.topic, r.key.decode() if r.key else "")
                    _apply(task, name, key, None if r.value is None else orjson.loads(r.value))
                if replayed is not None and tp in resume:  # a full replay rewrites it all
                    replayed.setdefault(tp.partition, []).extend(
                        (r.key or b"", r.value) for r in records
                    )
                count += len(records)
            pending = {tp for tp in pending if await reader.position(tp) < ends[tp]}
        RESTORED_RECORDS.labels(self.app_id, "changelog").inc(count)
        return {tp: await reader.position(tp) for tp in tps}

    async def _load_local(
        self, reader: AIOKafkaConsumer, tps: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """Load the tasks whose local copy may stand in for their changelog so far; returns
        the offsets their replays resume from."""
        if self._local is None:
            return {}
        self._state_topic_id = await self._current_state_topic_id()
        firsts, ends = await reader.beginning_offsets(tps), await reader.end_offsets(tps)
        resume, now, count = {}, time.time(), 0
        for tp in tps:
            checkpoint = self._local.checkpoint(tp.partition)
            if checkpoint is None or not checkpoint.usable(
                self._cluster_id, tp.topic, firsts[tp], ends[tp], now, self._state_topic_id
            ):
                continue
            task, loaded = self._tasks[tp.partition], 0
            try:
                for key, value in self._local.records(tp.partition):
                    _apply(task, *_split_state_key(key.decode()), orjson.loads(value))
                    task.restored_state = True
                    loaded += 1
            except Exception:  # an unreadable copy: this task replays its whole changelog
                log.exception("local_state_unreadable", app=self.app_id, partition=tp.partition)
                task.reset(self.table_names)
                continue
            count += loaded
            resume[tp] = checkpoint.offset
        RESTORED_RECORDS.labels(self.app_id, "local").inc(count)
        return resume

    async def _current_state_topic_id(self) -> str:
        """Asked at every restore, as the topic may have been recreated meanwhile; "" when
        the broker cannot tell (the copy then goes by the topic's name and offsets alone)."""
        try:
            ids = await topic_ids(self.bootstrap, [self.state_topic])
        except (KafkaError, OSError):
            log.warning("state_topic_id_unknown", app=self.app_id, exc_info=True)
            return ""
        return str(ids.get(self.state_topic, ""))

    async def _restore(self, partitions: Sequence[int]) -> None:
        if not partitions:
            return
        started = time.perf_counter()
        self._flush_local()  # pending commits first: written later, they would take it back
        for p in partitions:
            self._tasks[p].reset(self.table_names)
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.app_id}-restore",
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",  # a changelog that shrank is read again from its start
        )
        await reader.start()
        try:
            state = [TopicPartition(self.state_topic, p) for p in partitions]
            resume = await self._load_local(reader, state)
            full = [tp.partition for tp in state if tp not in resume]
            existing = await reader.topics()
            legacy = {
                self.changelog_topic(t): t
                for t in self.table_names
                if self.changelog_topic(t) in existing
            }
            # The old per-table changelogs first, then what superseded them.
            await self._replay(
                reader, [TopicPartition(t, p) for t in legacy for p in full],
                lambda topic, key: (legacy[topic], key),
            )  # fmt: skip
            replayed: dict[int, list[StateRecord]] = {}
            ended = await self._replay(
                reader, state, lambda topic, key: _split_state_key(key), resume, replayed
            )
        finally:
            await reader.stop()
        del reader  # garbage now: not to be frozen with the tables
        # The copy catches up: what the replay added where it resumed, everything elsewhere.
        self._save_local(
            {tp.partition: (replayed.get(tp.partition, []), ended[tp]) for tp in resume}
        )
        self._save_local(
            {
                p: (_materialized(self._tasks[p]), ended[TopicPartition(self.state_topic, p)])
                for p in full
            },
            replace=True,
        )
        TASK_RESTORES.labels(self.app_id, "assigned").inc(len(partitions))
        _out_of_the_collectors_reach()
        seconds = time.perf_counter() - started
        RESTORE_SECONDS.labels(self.app_id).observe(seconds)
        log.info(
            "stream_tasks_restored",
            app=self.app_id,
            partitions=list(partitions),
            from_local_copy=sorted(tp.partition for tp in resume),
            seconds=round(seconds, 3),
        )


def _apply(task: _Task, name: str, key: str, value: Any | None) -> None:
    """One changelog record (None: a tombstone) into a task's tables, positions or layout."""
    if name == POSITIONS and value is not None:
        task.positions[TopicPartition(key, task.partition)] = value
    elif name == LAYOUT:
        task.layout = value
    elif name in task.tables:
        task.tables[name].restore(key, value)


def _materialized(task: _Task) -> Iterator[StateRecord]:
    """A task's state as the changelog records that rebuild it."""
    for name, table in task.tables.items():
        for key, value in table.items():
            yield f"{name}/{key}".encode(), orjson.dumps(value)
    for tp, offset in task.positions.items():
        yield f"{POSITIONS}/{tp.topic}".encode(), orjson.dumps(offset)
    if task.layout is not None:
        yield f"{LAYOUT}/ids".encode(), orjson.dumps(task.layout)


async def _cluster_id(bootstrap: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="optisync-stream-admin")
    await admin.start()
    try:
        return str((await admin.describe_cluster())["cluster_id"])
    finally:
        await admin.close()


def stale_transactional_ids(
    app_id: str, partition: int, layout: str | None, restored_state: bool, current: str
) -> list[str]:
    """The ids that may hold a transaction open on a task's partitions, other than the
    current layout's: those of the layout that last committed to the task (`tg<count>`:
    one group's producers), or, for state without a layout record (written before the
    record existed), the per-task id of the versions before task groups."""
    if layout == current or (layout is None and not restored_state):
        return []
    if layout is None:
        return [f"{app_id}-{partition}"]
    if not (isinstance(layout, str) and layout.startswith("tg") and layout[2:].isdigit()):
        return []  # not a layout this code wrote (the value comes from the changelog)
    groups = int(layout[2:])
    return [f"{app_id}-{layout}-{partition % groups}-{k}" for k in range(PRODUCERS_PER_GROUP)]


def _split_state_key(key: str) -> tuple[str, str]:
    table, _, key = key.partition("/")
    return table, key


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Groups move here. aiokafka may still hand out records while these run: `_fetch` re-reads
    whatever arrives for a task that does not exist yet, and drops what is for a stopping one."""

    def __init__(self, owner: TransactionalStreamProcessor) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        owner = self.owner
        kept = {tp.partition for tp in owner.consumer.assignment()} - {
            tp.partition for tp in revoked
        }
        stale = [g for g, group in list(owner._groups.items()) if set(group.tasks) - kept]
        await self._or_fail(owner._drop_groups(stale))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._or_fail(self.owner._assign({tp.partition for tp in assigned}))

    async def _or_fail(self, step: Awaitable[None]) -> None:
        """aiokafka logs and swallows what a rebalance callback raises, and fetches on: the
        half-moved tasks would stand still while the instance looked ready."""
        try:
            await step
        except Exception:
            log.exception("stream_tasks_move_failed", app=self.owner.app_id)
            self.owner._crashed = True
            raise


@lru_cache
def task_group_assignor(groups: int) -> type[AbstractPartitionAssignor]:
    """The consumer group's assignor: partition `p` of every input goes to the owner of task
    group `p % groups`, and the groups go round the members (sorted by id).

    Its protocol name carries the group count, so an instance started with another count
    cannot join (INCONSISTENT_GROUP_PROTOCOL) and share tasks under other transactional ids.
    """

    class TaskGroupAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
        name = f"optisync-task-groups-{groups}"
        version = 0

        @classmethod
        def assign(
            cls,
            cluster: ClusterMetadata,
            members: Mapping[str, ConsumerProtocolMemberMetadata],
        ) -> dict[str, ConsumerProtocolMemberAssignment]:
            owners = sorted(members)
            assigned: dict[str, dict[str, list[int]]] = {m: {} for m in owners}
            # Every member runs the same code, so subscribes to the same inputs.
            topics = {topic for metadata in members.values() for topic in metadata.subscription}
            for topic in sorted(topics):
                for p in sorted(cluster.partitions_for_topic(topic) or ()):
                    owner = owners[(p % groups) % len(owners)]
                    if topic in members[owner].subscription:
                        assigned[owner].setdefault(topic, []).append(p)
            return {
                m: ConsumerProtocolMemberAssignment(cls.version, sorted(topics.items()), b"")
                for m, topics in assigned.items()
            }

        @classmethod
        def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
            return ConsumerProtocolMemberMetadata(cls.version, list(topics), b"")

        @classmethod
        def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
            pass

    return TaskGroupAssignor
