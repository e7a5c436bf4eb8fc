"""Hands notifications to channel adapters once per notification id.

Fresh notifications (due when their event is handled, the hot path):
1. Claim: Redis `SET claim:<id> <owner>|<time> NX`, kept longer than Kafka keeps the event.
   A redelivered event finds the claim and sends nothing, without touching MongoDB.
2. Adapter call.
3. Success: the claim is marked `done` at once. Then the outcome goes into the outbox
   (MongoDB, `_id` = notification id) in a batched insert (a failure's retry schedule too,
   and then its claim is marked `done`). Only after that is the event's offset committed.
A claim found neither `done` nor recorded in MongoDB after the lease time means its owner
died between 1 and 3: it is taken over (compare-and-set) and sent.

Scheduled notifications (reminders, retries, replays) live in the outbox; when each is due is
in a Redis sorted set (`DueIndex`, rebuilt from the outbox when a worker starts). The scheduler
reads the due ids (`ZRANGEBYSCORE`), takes a short Redis lease per id (`SET NX PX`, longer than
the adapter timeout), re-reads the document by `_id` under the lease, sends, and writes the
outcome (and drops the index entry) before releasing it.

The window: every send is noted in Redis before the adapter call (the fresh path's claim,
the scheduler's `sending:<id>` = attempt) and marked right after it returns (`done` /
`sent:<attempt>`, one Redis command, before any MongoDB write). A process killed between the
two (during the call, or in the sub-millisecond after it) leaves the outcome unknown: after
the lease the notification is sent again as an *uncertain resend* with the same
`Idempotency-Key` (webhooks) / `Message-ID` (e-mail) and `X-OptiSync-Resend: uncertain`, so a
provider honouring the key delivers it once (at-least-once to the provider, exactly-once to
the customer behind such a provider). A kill after the mark sends nothing again; so does every
redelivery, restart or second instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from optisync_common.clock import Clock
from optisync_common.logging import get_logger
from schemas.envelope import deterministic_event_id, new_envelope
from schemas.events.base import Channel
from schemas.events.dlq import DeadLetter
from schemas.events.notify import DeliveryAttempted, DeliveryStatus, NotificationKind
from schemas.registry import NOTIFY_DELIVERIES
from schemas.serde import encode
from services.notify.adapters.batching import RedisBatcher
from services.notify.adapters.channels import (
    ChannelAdapter,
    DeliveryError,
    OutboundMessage,
    build_adapter,
)
from services.notify.adapters.metrics import ADAPTER_LATENCY, DELIVERIES, UNCERTAIN_RESENDS
from services.notify.adapters.storage import (
    DEAD,
    PENDING,
    SENT,
    SKIPPED,
    Doc,
    NotifyRepository,
)
from services.notify.domain.resilience import CircuitBreaker, backoff_s
from services.notify.settings import NotifySettings

log = get_logger(__name__)

NOTIFY_DLQ = "notify.dlq.v1"
Save = Callable[[Doc, str, dict[str, Any]], Awaitable[None]]
# Channel configuration edits reach running workers within this many seconds.
CONFIG_CACHE_S = 30.0
CLAIM_TTL_S = 8 * 24 * 3600  # longer than booking.events.v1 keeps an event (7 days)
# Events this much older than the claims' memory (see `_memory_since`) are checked in MongoDB
# too: producers' clocks may run ahead of ours.
CLAIMS_CLOCK_SKEW_S = 60.0
SENDING_TTL_S = 24 * 3600  # longer than any retry schedule of one attempt
DONE = "done"
_TAKE_OVER = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('set', KEYS[1], ARGV[2], 'EX', ARGV[3]) end"
)
# sending:<id>: leave `sent:<n>` alone (ARGV[2]), else note attempt ARGV[1]; return what was there
_NOTE_SENDING = (
    "local prev = redis.call('get', KEYS[1]) "
    "if prev == ARGV[2] then return prev end "
    "redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[3]) return prev"
)
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"


class AdapterRegistry:
    """Resolves the adapter of a store's channel (store, then chain, then the default)."""

    def __init__(self, settings: NotifySettings, repo: NotifyRepository) -> None:
        self.settings = settings
        self.repo = repo
        self._adapters: dict[str, ChannelAdapter] = {}
        self._specs: dict[tuple[str, str], tuple[float, ChannelAdapter | None]] = {}

    async def resolve(self, store_id: str, channel: str) -> ChannelAdapter | None:
        cached = self._specs.get((store_id, channel))
        if cached is not None and time.monotonic() - cached[0] < CONFIG_CACHE_S:
            return cached[1]
        spec = await self.repo.channel_spec(store_id, channel)
        if spec is None and self.settings.default_webhook_url:
            spec = {"kind": "webhook", "url": self.settings.default_webhook_url}
        adapter = None if spec is None else self._adapter(spec)
        self._specs[(store_id, channel)] = (time.monotonic(), adapter)
        return adapter

    def _adapter(self, spec: dict[str, Any]) -> ChannelAdapter:
        """One adapter (and its connection pool) per distinct configuration."""
        fingerprint = orjson.dumps(spec, option=orjson.OPT_SORT_KEYS).decode()
        adapter = self._adapters.get(fingerprint)
        if adapter is None:
            adapter = self._adapters[fingerprint] = build_adapter(
                spec,
                default_secret=self.settings.signing_secret.get_secret_value(),
                timeout_s=self.settings.adapter_timeout_s,
            )
        return adapter

    async def close(self) -> None:
        for adapter in self._adapters.values():
            await adapter.close()


class Dispatcher:
    def __init__(
        self,
        settings: NotifySettings,
        repo: NotifyRepository,
        redis: aioredis.Redis,
        producer: Callable[[], AIOKafkaProducer],
        clock: Clock,
        adapters: AdapterRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.redis = redis
        self._producer = producer
        self.clock = clock
        self.adapters = adapters or AdapterRegistry(settings, repo)
        self.owner = f"{settings.service_name}-{uuid.uuid4().hex[:8]}"
        self.breakers: dict[str, CircuitBreaker] = {}
        self._lease_ms = int(settings.lease_s * 1000)
        self._missing: dict[str, float] = {}  # due-index ids without a document: since when
        self._note_sending = redis.register_script(_NOTE_SENDING)
        # Claims and their marks of the events in flight share pipelines (with the due index).
        self.batched = repo.schedule.batcher if repo.schedule else RedisBatcher(redis)

    # --- leases -------------------------------------------------------------------------

    def _lease_key(self, notification_id: str) -> str:
        return f"{self.settings.redis_prefix}lease:{notification_id}"

    async def _lease(self, notification_id: str) -> bool:
        key = self._lease_key(notification_id)
        return bool(await self.redis.set(key, self.owner, nx=True, px=self._lease_ms))

    async def _release(self, notification_id: str) -> None:
        await self.redis.eval(_RELEASE, 1, self._lease_key(notification_id), self.owner)

    # --- entry points -------------------------------------------------------------------

    def _claim_key(self, notification_id: str) -> str:
        return f"{self.settings.redis_prefix}claim:{notification_id}"

    async def _memory_since(self) -> float:
        """Since when Redis remembers claims (Unix seconds): the first time a worker asked
        this Redis. Redis keeps no copy on disk here, so a restart or a flush forgets every
        claim, and this marker with them: the next ask sets it anew."""
        key = f"{self.settings.redis_prefix}claims:since"
        since = await self.batched.execute("GET", key)
        if since is None:
            now = f"{time.time():.3f}"
            await self.batched.execute("SET", key, now, "NX")
            since = await self.batched.execute("GET", key) or now
        return float(since)

    async def _sent_before(self, docs: list[Doc], event_at: dt.datetime | None) -> set[str]:
        """Ids among `docs` the outbox already holds, when their event is older than the
        claims Redis remembers (after a Redis loss a won claim proves nothing); else none,
        without a MongoDB read (the hot path)."""
        if not docs or event_at is None:
            return set()
        if event_at.timestamp() >= await self._memory_since() + CLAIMS_CLOCK_SKEW_S:
            return set()
        return await self.repo.stored_ids([doc["_id"] for doc in docs])

    async def deliver_fresh(
        self, docs: list[Doc], event_at: dt.datetime | None = None
    ) -> tuple[list[Doc], list[str]]:
        """Send, in order, notifications that are due now and were never stored.

        Returns (documents to store, outcome included; ids claimed). The caller inserts the
        documents in one batch, then calls `settle(claimed)`. A notification already claimed
        (a redelivered event) is skipped without a MongoDB read: the first claim of an id is a
        Redis `SET NX` that stays for as long as Kafka keeps the event. An event (`event_at`)
        older than Redis's memory of claims is checked in the outbox instead."""
        to_store: list[Doc] = []
        claimed: list[str] = []
        stored = await self._sent_before(docs, event_at)
        for doc in docs:
            nid = doc["_id"]
            if nid in stored:  # handled before Redis forgot its claim
                await self.batched.execute("SET", self._claim_key(nid), DONE, "EX", CLAIM_TTL_S)
                continue
            value = f"{self.owner}|{time.time():.3f}"
            won = await self.batched.execute(
                "SET", self._claim_key(nid), value, "NX", "EX", CLAIM_TTL_S
            )
            decision = "claimed"
            if not won:
                decision = await self._contested(doc, value)
                if decision == "skip":
                    continue
                if decision == "defer":
                    # Someone is sending it right now: store it pending, due only after their
                    # lease, so the scheduler sends it should they never record an outcome.
                    doc["due_at"] = self.clock.now() + dt.timedelta(seconds=self.settings.lease_s)
                    doc["contended"] = True  # sent by the scheduler = its first sender died
                    to_store.append(doc)
                    continue
            claimed.append(nid)
            # Taken over from a sender that died: it may have sent it. Same key, flagged.
            await self._deliver(doc, self._in_memory, uncertain=decision == "take")
            to_store.append(doc)
        return to_store, claimed

    async def _contested(self, doc: Doc, value: str) -> str:
        """skip (done), defer (someone is on it) or take (their claim went stale unrecorded)."""
        key = self._claim_key(doc["_id"])
        current = await self.redis.get(key)
        if current is None:
            won = await self.redis.set(key, value, nx=True, ex=CLAIM_TTL_S)
            return "take" if won else "defer"
        text = current.decode() if isinstance(current, bytes) else str(current)
        if text == DONE:
            return "skip"
        claimed_at = float(text.rpartition("|")[2] or 0)
        if time.time() - claimed_at < self.settings.lease_s:
            return "defer"
        if await self.repo.get(doc["_id"]) is not None:
            await self.redis.set(key, DONE, ex=CLAIM_TTL_S)
            return "skip"
        # Claimed, never recorded, lease long gone: that sender died. Take over (once).
        taken = await self.redis.eval(_TAKE_OVER, 1, key, text, value, CLAIM_TTL_S)
        return "take" if taken else "defer"

    async def _in_memory(self, doc: Doc, state: str, fields: dict[str, Any]) -> None:
        doc.update(state=state, **fields)
        if state == SENT:
            # Sent: say so in Redis at once (sub-millisecond), before the batched MongoDB
            # insert, so a crash now cannot make a redelivery send it again.
            await self.batched.execute("SET", self._claim_key(doc["_id"]), DONE, "EX", CLAIM_TTL_S)

    async def settle(self, claimed: list[Doc]) -> None:
        """The outcomes are stored: mark the claims done (redeliveries skip on Redis alone).
        Sent ones were marked right after the call."""
        for doc in claimed:
            if doc.get("state") != SENT:
                await self.batched.execute(
                    "SET", self._claim_key(doc["_id"]), DONE, "EX", CLAIM_TTL_S
                )

    async def poll_once(self, limit: int = 200) -> int:
        """Send what is due (reminders, retries, work of a crashed instance): the due index
        (Redis ZSET) names the ids, a lease per id decides which instance takes each, MongoDB
        under the lease says whether it is still pending. Returns how many adapter calls or
        skips this instance made."""
        now = self.clock.now()
        handled = 0
        for nid, _ in await self.repo.due(now, limit):
            if not await self._lease(nid):
                continue  # another instance has it
            try:
                handled += await self._deliver_scheduled(nid)
            finally:
                await self._release(nid)
        return handled

    async def _deliver_scheduled(self, nid: str) -> int:
        doc = await self.repo.get(nid)  # fresh, under the lease
        now = self.clock.now()
        if doc is None:
            # Indexed just before its insert: give the insert time (real time, not the due
            # time: a reminder may be found due before its batched insert), then forget it.
            first_seen = self._missing.setdefault(nid, time.monotonic())
            if time.monotonic() - first_seen > self.settings.lease_s:
                await self.repo.unschedule([nid])
                del self._missing[nid]
            return 0
        self._missing.pop(nid, None)
        if doc["state"] != PENDING:
            await self.repo.unschedule([nid])
            return 0
        if doc["due_at"] > now:  # rescheduled (a retry) meanwhile: index its new time
            await self.repo.schedule_one(nid, doc["due_at"])
            return 0
        await self._deliver(doc, scheduled=True)
        if doc.get("state", PENDING) != PENDING:
            await self.repo.unschedule([nid])
        return 1

    async def deliver_one(self, notification_id: str) -> bool:
        """Send one pending, due notification now (replay), under the same lease rules."""
        if not await self._lease(notification_id):
            return False
        try:
            doc = await self.repo.get(notification_id)
            if doc is None or doc["state"] != PENDING or doc["due_at"] > self.clock.now():
                return False
            await self._deliver(doc, scheduled=True)
            if doc.get("state", PENDING) != PENDING:
                await self.repo.unschedule([notification_id])
            return True
        finally:
            await self._release(notification_id)

    async def run_scheduler(self, stop: asyncio.Event) -> None:
        next_check = time.monotonic() + self.settings.due_index_check_s
        while not stop.is_set():
            try:
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + self.settings.due_index_check_s
                    await self._rebuild_lost_index()
                while await self.poll_once() > 0 and not stop.is_set():
                    pass
            except Exception as exc:  # Mongo/Redis hiccup: try again next tick
                log.warning("scheduler_poll_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.poll_interval_s)

    async def _rebuild_lost_index(self) -> None:
        """Redis restarted or was flushed under a running worker: pending notifications are
        still in MongoDB, and would wait for the next worker start to be due again."""
        if await self.repo.schedule_lost():
            count = await self.repo.rebuild_schedule()
            log.warning("due_index_rebuilt_after_loss", pending=count)

    # --- one delivery ---------------------------------------------------------------------

    async def _update(self, doc: Doc, state: str, fields: dict[str, Any]) -> None:
        doc.update(state=state, **fields)
        await self.repo.set_state(doc["_id"], {"state": state, **fields})

    def _sending_key(self, notification_id: str) -> str:
        return f"{self.settings.redis_prefix}sending:{notification_id}"

    async def _mark_sending(self, doc: Doc, attempt: int) -> str:
        """Scheduled sends note the attempt in Redis before the call and `sent:<attempt>` right
        after it (one round trip each). Before a call, what was noted decides:
        - `sent:<attempt>`: a sender died after the call succeeded, before MongoDB heard of
          it: "sent" (recorded, not sent again);
        - `<attempt>`: a sender died during the call: "uncertain" (resent, same key, flagged);
        - otherwise "fresh"."""
        previous = await self._note_sending(
            keys=[self._sending_key(doc["_id"])],
            args=[str(attempt), f"sent:{attempt}", SENDING_TTL_S],
        )
        text = previous.decode() if isinstance(previous, bytes) else previous
        if text == f"sent:{attempt}":
            return "sent"
        if text == str(attempt):
            return "uncertain"
        # deferred behind a fresh-path sender that never recorded an outcome
        return "uncertain" if doc.get("contended") and attempt == 1 else "fresh"

    async def _mark_sent(self, doc: Doc, attempt: int) -> None:
        await self.redis.set(self._sending_key(doc["_id"]), f"sent:{attempt}", ex=SENDING_TTL_S)

    async def _deliver(
        self,
        doc: Doc,
        save: Save | None = None,
        *,
        scheduled: bool = False,
        uncertain: bool = False,
    ) -> None:
        """One attempt; `save` writes the outcome (an update of the stored document, or for a
        fresh notification the document itself, inserted afterwards in a batch). `uncertain`:
        an earlier call of this attempt may have reached the channel (its sender died)."""
        save = save or self._update
        now = self.clock.now()
        stale_after = doc.get("stale_after")
        if stale_after is not None and now > stale_after:
            await save(doc, SKIPPED, {"last_error": "stale", "finished_at": now})
            await self._record(doc, doc["attempts"] + 1, DeliveryStatus.SKIPPED, "stale", None)
            return
        adapter = await self.adapters.resolve(doc["store_id"], doc["channel"])
        if adapter is None:
            # Not a failure to retry: this store has not set up the channel. Recorded as
            # skipped (with the reason) rather than flooding the DLQ with every message.
            await save(doc, SKIPPED, {"last_error": "no_channel_config", "finished_at": now})
            await self._record(
                doc, doc["attempts"] + 1, DeliveryStatus.SKIPPED, "no_channel_config", None
            )
            return
        breaker = self.breakers.setdefault(
            adapter.endpoint,
            CircuitBreaker(self.settings.breaker_failures, self.settings.breaker_open_s),
        )
        mono = time.monotonic()
        if not breaker.allow(mono):
            # Not an attempt: the endpoint is known broken; come back when the breaker may close.
            wait_s = breaker.retry_at(mono) - mono
            await save(
                doc,
                PENDING,
                {"due_at": now + dt.timedelta(seconds=wait_s), "last_error": "circuit_open"},
            )
            return
        attempt = doc["attempts"] + 1
        if scheduled:
            noted = await self._mark_sending(doc, attempt)
            if noted == "sent":
                await save(doc, SENT, {"attempts": attempt, "sent_at": self.clock.now()})
                await self._record(doc, attempt, DeliveryStatus.SENT, None, None)
                return
            uncertain = uncertain or noted == "uncertain"
        if uncertain:
            UNCERTAIN_RESENDS.labels(doc["channel"]).inc()
            log.warning("uncertain_resend", notification_id=doc["_id"], attempt=attempt)
        started = time.perf_counter()
        try:
            await adapter.send(_message(doc, attempt, uncertain))
        except Exception as exc:
            latency_ms = (time.perf_counter() - started) * 1000
            breaker.record_failure(time.monotonic())
            retryable = exc.retryable if isinstance(exc, DeliveryError) else True
            await self._failed(doc, attempt, f"{exc}"[:500], retryable, latency_ms, save)
            return
        latency_ms = (time.perf_counter() - started) * 1000
        if scheduled:  # before anything else: a crash from here on does not resend
            await self._mark_sent(doc, attempt)
        breaker.record_success()
        ADAPTER_LATENCY.labels(doc["channel"]).observe(latency_ms / 1000)
        await save(doc, SENT, {"attempts": attempt, "sent_at": self.clock.now()})
        await self._record(doc, attempt, DeliveryStatus.SENT, None, latency_ms)

    async def _failed(
        self, doc: Doc, attempt: int, error: str, retryable: bool, latency_ms: float, save: Save
    ) -> None:
        if not retryable or attempt >= self.settings.max_attempts:
            await self._record(doc, attempt, DeliveryStatus.FAILED, error, latency_ms)
            await self._give_up(doc, attempt, error, save)
            return
        delay = backoff_s(attempt, self.settings.backoff_base_s, self.settings.backoff_cap_s)
        due = self.clock.now() + dt.timedelta(seconds=delay)
        await save(doc, PENDING, {"due_at": due, "attempts": attempt, "last_error": error})
        await self._record(doc, attempt, DeliveryStatus.FAILED, error, latency_ms)
        log.info(
            "delivery_retry_scheduled",
            notification_id=doc["_id"],
            attempt=attempt,
            retry_in_s=round(delay, 2),
            error=error,
        )

    async def _give_up(self, doc: Doc, attempt: int, error: str, save: Save) -> None:
        """Dead-letter: the DLQ record holds the whole notification, so a replay can send it
        even if the outbox document were lost."""
        now = self.clock.now()
        letter = DeadLetter.from_record(
            topic="notify.outbox",
            partition=0,
            offset=0,
            key=doc["_id"].encode(),
            value=orjson.dumps({k: v for k, v in doc.items()}, default=str),
            error=error,
            error_type="delivery_failed",
            failed_at=now,
            consumer=self.settings.service_name,
            attempts=max(attempt, 1),
        )
        envelope = new_envelope(
            letter,
            region=self.settings.region,
            store_id=doc["store_id"],
            correlation_id=doc["source_event_id"],
            occurred_at=now,
            event_id=deterministic_event_id("notify-dlq", doc["_id"], str(attempt)),
        )
        message = encode(envelope, topic=NOTIFY_DLQ, key=doc["_id"])
        await self._producer().send_and_wait(
            message.topic, value=message.value, key=message.key, headers=message.headers
        )
        await save(doc, DEAD, {"attempts": attempt, "last_error": error, "finished_at": now})
        await self._record(doc, max(attempt, 1), DeliveryStatus.DEAD_LETTERED, error, None)
        log.warning("notification_dead_lettered", notification_id=doc["_id"], error=error)

    async def _record(
        self,
        doc: Doc,
        attempt: int,
        status: DeliveryStatus,
        error: str | None,
        latency_ms: float | None,
    ) -> None:
        """One DeliveryAttempted per attempt. Produced without waiting for the broker's ack
        (the producer is idempotent and acks=all): the next notification need not wait."""
        DELIVERIES.labels(doc["channel"], str(status)).inc()
        now = self.clock.now()
        event = DeliveryAttempted(
            notification_id=doc["_id"],
            kind=NotificationKind(doc["kind"]),
            channel=Channel(doc["channel"]),
            attempt=max(attempt, 1),
            status=status,
            error=error,
            latency_ms=latency_ms,
            source_event_id=doc["source_event_id"],
            booking_id=doc.get("booking_id"),
        )
        envelope = new_envelope(
            event,
            region=self.settings.region,
            store_id=doc["store_id"],
            correlation_id=doc["source_event_id"],
            occurred_at=now,
            event_id=deterministic_event_id("delivery", doc["_id"], str(attempt), str(status)),
        )
        message = encode(envelope, topic=NOTIFY_DELIVERIES)
        future = await self._producer().send(
            message.topic, value=message.value, key=message.key, headers=message.headers
        )
        future.add_done_callback(_log_send_failure)


def _log_send_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("delivery_record_not_produced", error=repr(future.exception()))


def _message(doc: Doc, attempt: int, uncertain: bool = False) -> OutboundMessage:
    return OutboundMessage(
        notification_id=doc["_id"],
        kind=doc["kind"],
        channel=doc["channel"],
        store_id=doc["store_id"],
        booking_id=doc.get("booking_id"),
        recipient=dict(doc["recipient"]),
        locale=doc["locale"],
        subject=doc["subject"],
        text=doc["text"],
        attempt=attempt,
        uncertain=uncertain,
    )


__all__ = ["AdapterRegistry", "Dispatcher"]
