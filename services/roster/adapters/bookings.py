"""The roster's own projection of `booking.events.v1`: which optometrist has which booking
when, for the day view. The roster never reads the booking service's database."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka import AIOKafkaConsumer

from optisync_common.kafka import make_consumer
from optisync_common.logging import get_logger
from optisync_common.settings import ServiceSettings
from schemas.envelope import Envelope
from schemas.events.booking import (
    BookingCancelled,
    BookingCheckedIn,
    BookingCompleted,
    BookingConfirmed,
    BookingDisplaced,
    BookingNoShow,
    BookingReassigned,
    BookingRescheduled,
)
from schemas.registry import BOOKING_EVENTS
from schemas.serde import DecodeError, decode
from services.roster.adapters.repository import RosterRepository
from services.roster.domain.localtime import zone

log = get_logger(__name__)

STATUS_OF: dict[type[Any], str] = {
    BookingCancelled: "cancelled",
    BookingDisplaced: "displaced",
    BookingNoShow: "no_show",
    BookingCheckedIn: "checked_in",
    BookingCompleted: "completed",
}


async def apply_booking_event(repo: RosterRepository, env: Envelope[Any]) -> None:
    """Idempotent per event; events of one store arrive in order (one partition)."""
    event = env.payload
    if isinstance(event, BookingConfirmed):
        await repo.put_booking(event.booking_id, {
            "store_id": env.store_id, "optometrist_id": event.optometrist_id,
            "exam_type": event.exam_type, "timezone": event.timezone,
            "slot_start": event.slot_start.isoformat(), "slot_end": event.slot_end.isoformat(),
            "date": event.slot_start.astimezone(zone(event.timezone)).date().isoformat(),
            "status": "confirmed",
        })  # fmt: skip
        return
    booking_id = getattr(event, "booking_id", None)
    known = await repo.get_booking(booking_id) if booking_id else None
    if known is None:
        return  # not confirmed while we were listening (or not a booking-state event)
    if isinstance(event, BookingRescheduled):
        await repo.put_booking(event.booking_id, {
            "optometrist_id": event.new_optometrist_id,
            "slot_start": event.new_slot_start.isoformat(),
            "slot_end": event.new_slot_end.isoformat(),
            "date": event.new_slot_start.astimezone(zone(known["timezone"])).date().isoformat(),
            "status": "confirmed",
        })  # fmt: skip
    elif isinstance(event, BookingReassigned):
        await repo.put_booking(event.booking_id, {"optometrist_id": event.to_optometrist_id})
    elif type(event) in STATUS_OF:
        await repo.put_booking(booking_id, {"status": STATUS_OF[type(event)]})  # type: ignore[arg-type]


class BookingProjection:
    """A plain consumer group on booking.events.v1, committing after each applied batch."""

    def __init__(
        self, settings: ServiceSettings, repo: RosterRepository, group_id: str, offset_reset: str
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.group_id = group_id
        self.offset_reset = offset_reset
        self.consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def assigned(self) -> bool:
        return self.consumer is not None and bool(self.consumer.assignment())

    async def check(self) -> None:
        if not self.assigned():
            raise RuntimeError("booking events consumer has no partitions yet")

    async def _run_forever(self) -> None:
        delay = 0.5
        while True:  # Kafka may be down at startup: retry instead of dying
            try:
                await self._run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("roster_bookings_consumer_failed", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _run(self) -> None:
        consumer = make_consumer(
            self.settings, BOOKING_EVENTS, group_id=self.group_id,
            auto_offset_reset=self.offset_reset,
        )  # fmt: skip
        await consumer.start()
        self.consumer = consumer
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=500)
                for records in batches.values():
                    for record in records:
                        try:
                            env = decode(record.value, record.headers)
                        except DecodeError as exc:
                            log.warning("roster_bookings_undecodable", error=str(exc))
                            continue
                        await apply_booking_event(self.repo, env)
                if batches:
                    await consumer.commit()
        finally:
            self.consumer = None
            await consumer.stop()
