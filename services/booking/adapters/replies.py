"""The API's reply path: a command goes out on `booking.commands.v1` and the processor's
decision comes back on `booking.events.v1` with the command's correlation id.

One `ReplyWaiter` per API process reads every partition of `booking.events.v1` without a
consumer group (each API process must see every decision; a group would hand each decision to
one process only), from the end offsets it found at startup. It matches records against the
correlation ids this process issued and turns the decisive event into an HTTP `Outcome` for the
waiting request; when the request already gave up waiting and answered 202, the outcome is
stored in Redis instead, where `GET /v1/commands/{id}` (its status URL) finds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import Histogram
from starlette.responses import Response

from optisync_common.kafka import linger, make_admin, make_consumer
from optisync_common.logging import get_logger
from optisync_common.problems import problem_response
from optisync_common.resources import NotReady
from optisync_common.settings import ServiceSettings
from schemas.envelope import Envelope
from schemas.events.base import EventPayload
from schemas.registry import BOOKING_EVENTS
from schemas.serde import DecodeError, decode

log = get_logger(__name__)

# Where a command's time goes, hop by hop (`make bench` prints the means per rate):
# produce = the API's send until the broker acknowledged it (acks=all); decide = from the
# request to the processor producing its decision (its fetch, queue and decision); deliver =
# from then until this API read it (the processor's commit and our read-committed fetch);
# render = turning the decision into the HTTP answer.
COMMAND_HOPS = Histogram(
    "optisync_booking_command_hop_seconds",
    "Time of each hop of a command's round trip through the processor",
    ["hop"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
)
# The children, looked up once: a label lookup costs more than the observation, per booking.
PRODUCE_HOP, DECIDE_HOP, DELIVER_HOP, RENDER_HOP = (
    COMMAND_HOPS.labels(hop) for hop in ("produce", "decide", "deliver", "render")
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A finished HTTP answer: what the request returns, and what the status URL shows."""

    status: int
    body: bytes  # JSON
    media_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def problem(cls, status: int, code: str, detail: str, **extra: Any) -> Outcome:
        rendered = problem_response(status, code, detail, **extra)
        return cls(status, bytes(rendered.body), str(rendered.media_type))

    def response(self) -> Response:
        return Response(self.body, self.status, dict(self.headers), self.media_type)

    def stored(self) -> bytes:
        return orjson.dumps(
            {"status": "done", "http_status": self.status, "body": orjson.Fragment(self.body)}
        )


Render = Callable[[Envelope[EventPayload]], Awaitable[Outcome]]
# Sees every record (key, value, headers); must not raise or block.
Tap = Callable[[bytes | None, bytes | None, Any], None]


@dataclass(slots=True)
class Pending:
    command_event_id: str
    accepts: frozenset[str]  # event types that decide this command
    render: Render
    forget_at: float  # monotonic time after which a late decision is no longer awaited
    sent_at: float = field(default_factory=time.time)  # wall clock, as Kafka timestamps are
    # The request stopped waiting and answered 202: the outcome goes to the status URL.
    handed_off: bool = False
    future: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


PENDING = b'{"status":"pending"}'


def decides(head: dict[str, Any], command_event_id: str, accepts: Collection[str]) -> bool:
    """Whether a decision record's head (its JSON, peeked) decides the command it names: a
    type the command accepts, caused by that very command (not a retry's twin)."""
    return head.get("type") in accepts and head.get("causation_id") == command_event_id


@dataclass(frozen=True, slots=True)
class LateLookup:
    """What a status read needs to find a 202'd command's decision in `booking.events.v1`
    itself when no process waits for it any more (the one that answered 202 restarted, or its
    late window passed), stored with the pending status."""

    store_id: str  # the decision's key, so its partition
    command_event_id: str
    accepts: tuple[str, ...]
    sent_ms: int  # wall clock, as the records' timestamps
    render: dict[str, str | None]  # how to turn the decision into the answer (commands.py)
    scanned_to: int | None = None  # the offset a fruitless look stopped at: the next goes on

    def pending_json(self) -> bytes:
        return orjson.dumps({"status": "pending", "lookup": asdict(self)})

    @classmethod
    def of_pending(cls, stored: bytes) -> LateLookup | None:
        """The lookup a stored status carries: None for an outcome, or a pending status
        without a readable one (written by an older or newer version of the API)."""
        if not stored.startswith(PENDING[:-1]):
            return None
        try:
            return cls.of_raw(orjson.loads(stored)["lookup"])
        except (orjson.JSONDecodeError, KeyError, TypeError):  # another version's, or none
            return None

    @classmethod
    def of_raw(cls, raw: dict[str, Any]) -> LateLookup:
        """From its `asdict` form; TypeError or KeyError when it is not one."""
        return cls(**{**raw, "accepts": tuple(raw["accepts"])})


# Progress of a fruitless lookup, written only while the status is still pending: an outcome
# saved meanwhile must stay.
_SAVE_PROGRESS = """
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, 18) == '{"status":"pending' then
  redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
end
"""


class CommandOutcomes:
    """Outcomes per correlation id in Redis (`booking:cmd:{id}`), readable for `ttl_s`."""

    def __init__(self, redis: aioredis.Redis, prefix: str, ttl_s: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s
        self._save_progress = redis.register_script(_SAVE_PROGRESS)

    def key(self, correlation_id: str) -> str:
        return f"{self.prefix}cmd:{correlation_id}"

    async def mark_pending(
        self, correlation_id: str, lookup: LateLookup, ttl_s: int | None = None
    ) -> None:
        # NX: a decision stored a moment earlier must not be overwritten by "pending".
        pending = lookup.pending_json()
        ex = self.ttl_s if ttl_s is None else ttl_s
        await self.redis.set(self.key(correlation_id), pending, ex=ex, nx=True)

    async def save_progress(self, correlation_id: str, lookup: LateLookup) -> None:
        await self._save_progress(keys=[self.key(correlation_id)], args=[lookup.pending_json()])

    async def claim_lookup(self, correlation_id: str, every_s: float) -> bool:
        """At most one lookup per command every `every_s`, whoever polls its status."""
        key = f"{self.key(correlation_id)}:lookup"
        return bool(await self.redis.set(key, b"1", px=max(int(every_s * 1000), 1), nx=True))

    async def save(self, outcomes: Iterable[tuple[str, Outcome]]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for correlation_id, outcome in outcomes:
                pipe.set(self.key(correlation_id), outcome.stored(), ex=self.ttl_s)
            await pipe.execute()

    async def get(self, correlation_id: str) -> bytes | None:
        return cast(bytes | None, await self.redis.get(self.key(correlation_id)))


async def topic_partitions(settings: ServiceSettings, topic: str) -> list[TopicPartition]:
    admin = make_admin(settings)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] or not described["partitions"]:
        raise NotReady(f"topic {topic} is not available (error {described['error_code']})")
    return [TopicPartition(topic, int(p["partition"])) for p in described["partitions"]]


class ReplyWaiter:
    def __init__(
        self,
        settings: ServiceSettings,
        outcomes: CommandOutcomes,
        *,
        topic: str = BOOKING_EVENTS,
        late_window_s: float = 900.0,
        linger_s: float = 0.0,
        taps: Sequence[Tap] = (),
    ) -> None:
        self.settings = settings
        self.outcomes = outcomes
        self.topic = topic
        self.late_window_s = late_window_s
        self.linger_s = linger_s  # see optisync_common.kafka.linger
        self.taps = list(taps)  # others in this process that read every record too
        self._pending: dict[str, Pending] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._resume_at: dict[TopicPartition, int] = {}
        self._ready = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._queue: asyncio.Queue[tuple[str, Outcome]] = asyncio.Queue()
        self._runner: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def start(self, wait_s: float = 15.0) -> None:
        """Start in the background (Kafka may be down: /readyz says so meanwhile) and give it
        `wait_s` to position itself, so a normal start serves requests at once."""
        self._runner = asyncio.create_task(self._run(), name="reply-waiter")
        self._writer = asyncio.create_task(self._write_outcomes(), name="reply-outcomes")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), wait_s)

    async def stop(self) -> None:
        for task in (self._runner, *self._tasks):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(t for t in (self._runner, *self._tasks) if t), return_exceptions=True
        )
        await self._flush()
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)

    async def check(self) -> None:
        if not self.ready or self._runner is None or self._runner.done():
            raise NotReady("reply consumer is not positioned on booking.events.v1")

    def expect(
        self,
        correlation_id: str,
        command_event_id: str,
        accepts: frozenset[str],
        render: Render,
        wait_s: float,
    ) -> Pending:
        """Register before producing: the decision may arrive before `send` returns."""
        if not self.ready:
            raise NotReady("the reply consumer is not ready")
        pending = Pending(
            command_event_id, accepts, render, time.monotonic() + wait_s + self.late_window_s
        )
        self._pending[correlation_id] = pending
        return pending

    def awaits(self, correlation_id: str) -> bool:
        return correlation_id in self._pending

    def forget(self, correlation_id: str) -> None:
        self._pending.pop(correlation_id, None)

    def fail(self, correlation_id: str, outcome: Outcome) -> None:
        """Settle a command that will never be decided (it could not be sent)."""
        pending = self._pending.pop(correlation_id, None)
        if pending is not None and not pending.future.done():
            pending.future.set_result(outcome)
        self._queue.put_nowait((correlation_id, outcome))

    # ---- consumer ----------------------------------------------------------------------

    async def _run(self) -> None:
        delay = 0.5
        while True:
            consumer = make_consumer(
                self.settings,
                group_id=None,
                client_id=f"{self.settings.service_name}-replies",
                fetch_max_wait_ms=100,
            )
            try:
                partitions = await topic_partitions(self.settings, self.topic)
                await consumer.start()
                consumer.assign(partitions)
                # First start: from the end. After a reconnect: where we stopped (for a
                # partition that had nothing since the first start, that start's end), so
                # decisions made meanwhile still reach the requests (or status URLs) waiting.
                for tp, offset in (await consumer.end_offsets(partitions)).items():
                    consumer.seek(tp, self._resume_at.setdefault(tp, offset))
                self._consumer = consumer
                self._ready.set()
                log.info("reply_waiter_ready", partitions=len(partitions))
                delay = 0.5
                await self._consume(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("reply_waiter_failed", error=repr(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            finally:
                self._ready.clear()
                self._consumer = None
                await consumer.stop()

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        next_sweep = time.monotonic() + 10
        while True:
            batch = await consumer.getmany(timeout_ms=1000, max_records=2000)
            for tp, records in batch.items():
                for tap in self.taps:
                    for record in records:
                        tap(record.key, record.value, record.headers)
                if self._pending:
                    for record in records:
                        self._match(record.value, record.headers, record.timestamp)
                if records:
                    self._resume_at[tp] = records[-1].offset + 1
            if time.monotonic() >= next_sweep:
                self._sweep()
                next_sweep = time.monotonic() + 10
            await linger(batch, self.linger_s)

    def _match(self, value: bytes | None, headers: Any, produced_ms: int | None = None) -> None:
        # Every API process sees every decision: peek at the ids with orjson and run the
        # full (pydantic) decode only for the few records that are ours.
        try:
            head = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            return
        if not isinstance(head, dict):
            return
        correlation_id = head.get("correlation_id")
        pending = self._pending.get(correlation_id) if isinstance(correlation_id, str) else None
        if pending is None or not decides(head, pending.command_event_id, pending.accepts):
            return
        try:
            envelope = decode(value, headers)
        except DecodeError as exc:
            log.error("reply_undecodable", correlation_id=correlation_id, error=str(exc))
            return
        assert isinstance(correlation_id, str)
        del self._pending[correlation_id]
        if produced_ms is not None:  # both clocks are this machine's (or NTP-close) wall clocks
            produced = produced_ms / 1000
            DECIDE_HOP.observe(max(produced - pending.sent_at, 0.0))
            DELIVER_HOP.observe(max(time.time() - produced, 0.0))
        task = asyncio.create_task(self._settle(correlation_id, pending, envelope))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(
        self, correlation_id: str, pending: Pending, envelope: Envelope[EventPayload]
    ) -> None:
        started = time.perf_counter()
        try:
            outcome = await pending.render(envelope)
            RENDER_HOP.observe(time.perf_counter() - started)
        except Exception:
            log.exception("reply_render_failed", correlation_id=correlation_id)
            outcome = Outcome.problem(500, "internal_error", "an unexpected error occurred")
        if not pending.future.done():
            pending.future.set_result(outcome)
        if pending.handed_off:
            self._queue.put_nowait((correlation_id, outcome))

    def _sweep(self) -> None:
        now = time.monotonic()
        expired = [cid for cid, p in self._pending.items() if p.forget_at < now]
        for cid in expired:
            del self._pending[cid]
        if expired:
            log.warning("reply_waiter_gave_up", commands=len(expired))

    # ---- outcome store -----------------------------------------------------------------

    async def _write_outcomes(self) -> None:
        while True:
            first = await self._queue.get()
            await self._save([first, *self._drain()])

    def _drain(self, limit: int = 500) -> list[tuple[str, Outcome]]:
        items: list[tuple[str, Outcome]] = []
        while len(items) < limit and not self._queue.empty():
            items.append(self._queue.get_nowait())
        return items

    async def _flush(self) -> None:
        items = self._drain(limit=1_000_000)
        if items:
            await self._save(items)

    async def _save(self, items: list[tuple[str, Outcome]]) -> None:
        for attempt in range(3):
            try:
                await self.outcomes.save(items)
                return
            except Exception as exc:
                log.warning("outcomes_not_saved", error=repr(exc), attempt=attempt + 1)
                await asyncio.sleep(0.2 * (attempt + 1))
        log.error("outcomes_dropped", commands=len(items))
