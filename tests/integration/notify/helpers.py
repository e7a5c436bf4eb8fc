"""Real local endpoints for notify tests: a signed-webhook receiver (aiohttp) and an SMTP
server (aiosmtpd), plus builders for booking events."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import time
import uuid
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default as email_policy
from typing import Any

import orjson
from aiohttp import web
from aiosmtpd.controller import Controller

from optisync_common.kafka import EventPublisher
from schemas.envelope import Envelope, new_envelope
from schemas.events.base import Actor, Channel, EventPayload
from schemas.events.booking import (
    BookingCancelled,
    BookingConfirmed,
    BookingRescheduled,
    Customer,
)
from services.notify.domain.signing import SIGNATURE_HEADER, verify


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    notification_id: str
    idempotency_key: str | None
    body: dict[str, Any]
    at: float
    resend: str | None = None  # X-OptiSync-Resend: "uncertain" after an unknown outcome


@dataclass
class WebhookReceiver:
    """A chat-gateway stand-in: checks the signature, records every call, and answers 503 for
    stores listed in `failing` (to exercise retries and the DLQ). Like a gateway honouring
    `Idempotency-Key`, it delivers a key once (`delivered`) and acknowledges repeats."""

    secret: str
    received: list[Received] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)
    rejected: int = 0
    failed_calls: int = 0
    delay_s: float = 0.0  # a slow gateway keeps calls in flight (restart tests)
    in_flight: set[str] = field(default_factory=set)
    answered_at: dict[str, float] = field(default_factory=dict)
    delivered: dict[str, Received] = field(default_factory=dict)  # idempotency key -> first
    port: int = 0
    _runner: web.AppRunner | None = None
    _arrivals: asyncio.Condition | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        self._arrivals = asyncio.Condition()
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify(
                self.secret,
                request.headers.get(SIGNATURE_HEADER),
                body,
                now=time.time(),
                max_skew_s=60,
            )
        except ValueError:
            self.rejected += 1
            return web.Response(status=401)
        payload = orjson.loads(body)
        if payload["store_id"] in self.failing:
            self.failed_calls += 1
            return web.Response(status=503)
        nid = payload["notification_id"]
        key = request.headers.get("Idempotency-Key")
        call = Received(
            nid, key, payload, time.perf_counter(), request.headers.get("X-OptiSync-Resend")
        )
        self.received.append(call)
        if key is not None:
            self.delivered.setdefault(key, call)
        assert self._arrivals is not None
        async with self._arrivals:
            self._arrivals.notify_all()
        self.in_flight.add(nid)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight.discard(nid)
            self.answered_at[nid] = time.monotonic()
        return web.Response(status=200)

    def for_store(self, store_id: str) -> list[Received]:
        return [r for r in self.received if r.body["store_id"] == store_id]

    async def wait_until(self, check: Any, within_s: float = 30.0) -> bool:
        """Wait until `check()` holds, re-checking whenever a message arrives."""
        assert self._arrivals is not None
        deadline = time.monotonic() + within_s
        async with self._arrivals:
            while not check():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrivals.wait(), min(remaining, 0.5))
        return True

    async def wait_for(self, store_id: str, count: int, within_s: float = 30.0) -> list[Received]:
        assert self._arrivals is not None
        deadline = time.monotonic() + within_s
        async with self._arrivals:
            while len(self.for_store(store_id)) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._arrivals.wait(), remaining)
                except TimeoutError:
                    break
        got = self.for_store(store_id)
        assert len(got) >= count, f"{store_id}: expected {count} messages, got {len(got)}"
        return got


class _Sink:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=email_policy))
        return "250 OK"


class SmtpServer:
    """A real SMTP server on 127.0.0.1 keeping what it receives."""

    def __init__(self) -> None:
        self.sink = _Sink()
        self.port = free_port()
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=self.port)

    @property
    def messages(self) -> list[Any]:
        return self.sink.messages

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


# ------------------------------------------------------------------------------ events

UTC = dt.UTC


def at_local(day: dt.date, hhmm: str, tz: str) -> dt.datetime:
    from zoneinfo import ZoneInfo

    hour, minute = map(int, hhmm.split(":"))
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(tz)).astimezone(
        UTC
    )


def envelope(
    payload: EventPayload, store_id: str, now: dt.datetime, event_id: uuid.UUID | None = None
) -> Envelope[EventPayload]:
    return new_envelope(
        payload,
        region="cn",
        store_id=store_id,
        correlation_id=uuid.uuid4().hex,
        occurred_at=now,
        event_id=event_id,
    )


def confirmed(
    store_id: str,
    booking_id: str,
    slot: dt.datetime,
    tz: str,
    *,
    locale: str,
    channel: Channel = Channel.WECHAT,
    chat_id: str = "wx-1",
    name: str = "Ana",
    now: dt.datetime,
) -> Envelope[EventPayload]:
    return envelope(
        BookingConfirmed(
            booking_id=booking_id,
            idempotency_key=f"k-{booking_id}",
            exam_type="standard",
            optometrist_id="o1",
            customer=Customer(
                customer_ref=f"c-{booking_id}", name=name, chat_id=chat_id, locale=locale
            ),
            channel=channel,
            slot_start=slot,
            slot_end=slot + dt.timedelta(minutes=30),
            local_start=slot.isoformat(),
            timezone=tz,
        ),
        store_id,
        now,
    )


def rescheduled(
    store_id: str, booking_id: str, old: dt.datetime, new: dt.datetime, now: dt.datetime
) -> Envelope[EventPayload]:
    return envelope(
        BookingRescheduled(
            booking_id=booking_id,
            idempotency_key=f"r-{booking_id}-{new:%H%M}",
            customer_ref=f"c-{booking_id}",
            exam_type="standard",
            old_slot_start=old,
            old_optometrist_id="o1",
            old_local_start=old.isoformat(),
            new_slot_start=new,
            new_slot_end=new + dt.timedelta(minutes=30),
            new_optometrist_id="o1",
            new_local_start=new.isoformat(),
        ),
        store_id,
        now,
    )


def cancelled(
    store_id: str, booking_id: str, slot: dt.datetime, now: dt.datetime, by: Actor = Actor.CUSTOMER
) -> Envelope[EventPayload]:
    return envelope(
        BookingCancelled(
            booking_id=booking_id,
            idempotency_key=f"x-{booking_id}",
            customer_ref=f"c-{booking_id}",
            by=by,
            late=False,
            minutes_before_start=600,
            exam_type="standard",
            optometrist_id="o1",
            slot_start=slot,
            local_start=slot.isoformat(),
        ),
        store_id,
        now,
    )


async def publish_all(publisher: EventPublisher, envelopes: list[Envelope[EventPayload]]) -> None:
    for env in envelopes:
        await publisher.publish(env)


class MovableClock:
    """Real time plus an offset the test moves (the worker's injected clock)."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def now(self) -> dt.datetime:
        return dt.datetime.now(UTC) + self.offset

    def set(self, instant: dt.datetime) -> None:
        self.offset = instant - dt.datetime.now(UTC)

    def reset(self) -> None:
        self.offset = dt.timedelta()


class TopicTail:
    """Reads a topic from where it ended when `start` was called (no consumer group)."""

    def __init__(self, settings: Any, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.seen: list[Envelope[EventPayload]] = []
        self._consumer: Any = None

    async def start(self) -> TopicTail:
        from optisync_common.kafka import make_consumer
        from services.notify.adapters.replay import topic_partitions

        self._consumer = make_consumer(self.settings, group_id=None)
        await self._consumer.start()
        tps = await topic_partitions(self.settings, self.topic)
        self._consumer.assign(tps)
        end = await self._consumer.end_offsets(tps)
        for tp in tps:
            self._consumer.seek(tp, end[tp])
        return self

    async def stop(self) -> None:
        await self._consumer.stop()

    async def collect(self, predicate: Any, count: int, within_s: float = 30.0) -> list[Any]:
        from schemas.serde import decode

        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            matching = [e for e in self.seen if predicate(e)]
            if len(matching) >= count:
                return matching
            batch = await self._consumer.getmany(timeout_ms=300)
            for records in batch.values():
                self.seen.extend(decode(r.value, r.headers) for r in records)
        matching = [e for e in self.seen if predicate(e)]
        assert len(matching) >= count, f"{self.topic}: expected {count}, got {len(matching)}"
        return matching


async def wait_state(
    repo: Any, notification_id: str, state: str, within_s: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    doc: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        doc = await repo.get(notification_id)
        if doc is not None and doc["state"] == state:
            return doc
        await asyncio.sleep(0.1)
    raise AssertionError(f"{notification_id} did not reach {state}: {doc}")
