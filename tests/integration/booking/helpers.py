"""Helpers of the booking integration tests: publishing like a service, registering a store
through `roster.events.v1`, the API app with its lifespan, and a fake decider.

The fake decider is a test double of the availability processor that talks only through the
real broker: it reads `booking.commands.v1` for ONE store id and answers on
`booking.events.v1` with real events (same correlation id, causation = the command's id).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from aiokafka.structs import RecordMetadata

from optisync_common.clock import FixedClock
from optisync_common.kafka import EventPublisher, active_groups, make_consumer
from schemas.envelope import Envelope, new_envelope
from schemas.events.base import EventPayload, RejectionReason
from schemas.events.booking import (
    BookingCancelled,
    BookingCheckedIn,
    BookingCompleted,
    BookingConfirmed,
    BookingNoShow,
    BookingRejected,
    BookingRescheduled,
    CancelBooking,
    CheckInBooking,
    CommandFailed,
    CompleteBooking,
    MarkNoShow,
    RequestBooking,
    RescheduleBooking,
)
from schemas.events.roster import ExamTypeDefined, StoreRegistered
from schemas.registry import BOOKING_COMMANDS
from schemas.serde import decode
from services.booking.adapters.projections import Projector
from services.booking.adapters.replies import topic_partitions
from services.booking.adapters.views import RedisViews
from services.booking.api.deps import get_clock
from services.booking.api.fast_bookings import FastBookingRequests
from services.booking.api.fast_reads import FastAvailabilityReads
from services.booking.entrypoints.http import build_app
from services.booking.settings import BookingSettings

TZ = "Europe/Berlin"
EVERY_DAY = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def eventually(check: Callable[[], Awaitable[Any]], within_s: float = 15.0) -> Any:
    """Poll `check` until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within_s}s")
        await asyncio.sleep(0.02)


class Bus:
    """Publishes envelopes like a service would."""

    def __init__(self, publisher: EventPublisher, projector: Projector) -> None:
        self.publisher = publisher
        self.projector = projector

    async def publish(
        self, payload: EventPayload, store_id: str, envelope: Envelope[Any] | None = None
    ) -> tuple[Envelope[Any], RecordMetadata]:
        envelope = envelope or new_envelope(
            payload, region="cn", store_id=store_id, correlation_id=uuid.uuid4().hex,
            occurred_at=now().replace(microsecond=0),
        )  # fmt: skip
        return envelope, await self.publisher.publish(envelope)

    async def projected(self, meta: RecordMetadata) -> None:
        """Wait until the projector has applied the record at `meta`."""

        async def past() -> bool:
            for tp, offset in self.projector.positions.items():
                if (tp.topic, tp.partition) == (meta.topic, meta.partition):
                    return offset > meta.offset
            return False

        await eventually(past)


@dataclass
class Store:
    store_id: str
    day: dt.date  # a bookable local day (open 09:00-18:00 every day)

    def at(self, hhmm: str, day: dt.date | None = None) -> dt.datetime:
        hour, minute = map(int, hhmm.split(":"))
        return dt.datetime.combine(day or self.day, dt.time(hour, minute), tzinfo=ZoneInfo(TZ))


async def register_store(bus: Bus, views: RedisViews, store_id: str) -> Store:
    await bus.publish(
        StoreRegistered(
            store_id=store_id, name="Test store", region="cn", timezone=TZ, slot_minutes=15,
            opening_hours={d: [{"open": "09:00", "close": "18:00"}] for d in EVERY_DAY},
        ),
        store_id,
    )  # fmt: skip
    for code, minutes in (("std", 30), ("long", 60)):
        await bus.publish(
            ExamTypeDefined(
                code=code, name=code, duration_minutes=minutes, required_skill="general"
            ),
            store_id,
        )

    async def ready() -> bool:
        catalog = await views.catalog(store_id)
        return catalog is not None and {"std", "long"} <= set(catalog.exam_types)

    await eventually(ready)
    return Store(store_id, now().astimezone(ZoneInfo(TZ)).date() + dt.timedelta(days=10))


# The real availability processor's consumer group (its faust app id).
PROCESSOR_GROUP = "optisync-booking-processor"


async def real_processor_running(settings: BookingSettings) -> bool:
    return bool(await active_groups(settings, [PROCESSOR_GROUP]))


@dataclass
class FakeDecider:
    """A tiny processor for one store: first come first served per slot, de-duplication by
    idempotency key and by customer+exam+slot, and the booking life cycle. While `silent` it
    answers nothing; customers named `reject:<reason>` get that rejection."""

    bus: Bus
    store_id: str
    silent: bool = False
    bookings: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen: list[Envelope[Any]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def start(self, settings: BookingSettings) -> None:
        consumer = make_consumer(settings, group_id=None)
        partitions = await topic_partitions(settings, BOOKING_COMMANDS)
        await consumer.start()
        consumer.assign(partitions)
        for tp, offset in (await consumer.end_offsets(partitions)).items():
            consumer.seek(tp, offset)
        self._task = asyncio.create_task(self._run(consumer))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, consumer: Any) -> None:
        try:
            async for record in consumer:
                if record.key != self.store_id.encode():
                    continue  # only our own store: other tests run their own deciders
                command = decode(record.value, record.headers)
                self.seen.append(command)
                reply = None if self.silent else self.decide(command)
                if reply is not None:
                    await self.answer(command, reply)
        finally:
            await consumer.stop()

    async def answer(self, command: Envelope[Any], reply: EventPayload) -> None:
        await self.bus.publisher.publish(command.derive(reply, occurred_at=now()))

    def decide(self, command: Envelope[Any]) -> EventPayload | None:
        c = command.payload
        if isinstance(c, RequestBooking):
            return self._request(c)
        booking = self.bookings.get(c.booking_id)
        if booking is None:
            return CommandFailed(
                command_type=command.type, booking_id=c.booking_id,
                idempotency_key=c.idempotency_key, reason=RejectionReason.UNKNOWN_BOOKING,
            )  # fmt: skip
        allowed = {"confirmed"} if not isinstance(c, CompleteBooking) else {"checked_in"}
        if booking["status"] not in allowed:
            return CommandFailed(
                command_type=command.type, booking_id=c.booking_id,
                idempotency_key=c.idempotency_key, reason=RejectionReason.INVALID_TRANSITION,
                detail=f"booking is {booking['status']}",
            )  # fmt: skip
        common = {"booking_id": c.booking_id, "idempotency_key": c.idempotency_key}
        if isinstance(c, CancelBooking):
            booking["status"] = "cancelled"
            return BookingCancelled(
                **common, customer_ref=booking["customer_ref"], by=c.by, reason=c.reason,
                late=False, minutes_before_start=60, exam_type="std", optometrist_id="o1",
                slot_start=booking["start"], local_start=booking["start"].isoformat(),
            )  # fmt: skip
        if isinstance(c, RescheduleBooking):
            old = booking["start"]
            booking["start"] = c.new_slot_start
            return BookingRescheduled(
                **common, customer_ref=booking["customer_ref"], exam_type="std",
                old_slot_start=old, old_optometrist_id="o1", old_local_start=old.isoformat(),
                new_slot_start=c.new_slot_start,
                new_slot_end=c.new_slot_start + dt.timedelta(minutes=30),
                new_optometrist_id=c.optometrist_id or "o1",
                new_local_start=c.new_slot_start.astimezone(ZoneInfo(TZ)).isoformat(),
            )  # fmt: skip
        if isinstance(c, CheckInBooking):
            booking["status"] = "checked_in"
            return BookingCheckedIn(**common, optometrist_id="o1", staff_id=c.staff_id)
        if isinstance(c, MarkNoShow):
            booking["status"] = "no_show"
            return BookingNoShow(**common, slot_start=booking["start"])
        if isinstance(c, CompleteBooking):
            booking["status"] = "completed"
            return BookingCompleted(**common, optometrist_id=c.optometrist_id or "o1")
        return None

    def _request(self, c: RequestBooking) -> EventPayload | None:
        ref = c.customer.customer_ref
        if (c.customer.name or "").startswith("reject:"):
            reason = RejectionReason((c.customer.name or "").removeprefix("reject:"))
            return BookingRejected(
                booking_id=c.booking_id, idempotency_key=c.idempotency_key, reason=reason,
                slot_start=c.slot_start,
            )  # fmt: skip
        for booking_id, b in self.bookings.items():
            same_key = b["key"] == c.idempotency_key
            same_ask = (b["customer_ref"], b["exam"], b["start"]) == (
                ref,
                c.exam_type,
                c.slot_start,
            )
            if same_key or (same_ask and b["status"] == "confirmed"):
                return BookingRejected(
                    booking_id=c.booking_id, idempotency_key=c.idempotency_key,
                    reason=RejectionReason.DUPLICATE, existing_booking_id=booking_id,
                )  # fmt: skip
        taken = any(b["start"] == c.slot_start and b["status"] != "cancelled"
                    for b in self.bookings.values())  # fmt: skip
        if taken:
            return BookingRejected(
                booking_id=c.booking_id, idempotency_key=c.idempotency_key,
                reason=RejectionReason.SLOT_TAKEN, slot_start=c.slot_start,
                alternatives=[c.slot_start + dt.timedelta(minutes=30)],
            )  # fmt: skip
        self.bookings[c.booking_id] = {
            "key": c.idempotency_key, "customer_ref": ref, "exam": c.exam_type,
            "start": c.slot_start, "status": "confirmed",
        }  # fmt: skip
        end = c.slot_start + dt.timedelta(minutes=30)
        return BookingConfirmed(
            booking_id=c.booking_id, idempotency_key=c.idempotency_key, customer=c.customer,
            channel=c.channel, exam_type=c.exam_type, optometrist_id=c.optometrist_id or "o1",
            slot_start=c.slot_start, slot_end=end, timezone=TZ,
            local_start=c.slot_start.astimezone(ZoneInfo(TZ)).isoformat(),
        )  # fmt: skip


@contextlib.asynccontextmanager
async def api_client(
    settings: BookingSettings, clock: FixedClock, *, fast_paths: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """The booking API app with its real lifespan (producer, reply waiter, Mongo, Redis) and
    an injected clock; `fast_paths=False` sends every availability read and booking request
    through its FastAPI route."""
    app = build_app(settings)
    if not fast_paths:
        fast: tuple[object, ...] = (FastAvailabilityReads, FastBookingRequests)
        app.user_middleware = [m for m in app.user_middleware if m.cls not in fast]
    app.dependency_overrides[get_clock] = lambda: clock
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
