"""A small store built through the real roster events, for processor tests."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from schemas.envelope import Envelope, new_envelope
from schemas.events.base import EventPayload
from schemas.events.booking import Customer, RequestBooking
from schemas.events.roster import (
    ExamTypeDefined,
    OptometristJoined,
    ShiftPublished,
    StoreRegistered,
)
from services.booking.adapters.processor import AvailabilityProcessor, ProcessorTables

_counter = itertools.count()


def env(store_id: str, payload: EventPayload, at: dt.datetime) -> Envelope[Any]:
    return new_envelope(
        payload, region="eu", store_id=store_id, correlation_id=f"c{next(_counter)}",
        occurred_at=at,
    )  # fmt: skip


def berlin_store(
    store_id: str = "berlin", day: dt.date = dt.date(2026, 12, 7), tz: str = "Europe/Berlin"
) -> tuple[AvailabilityProcessor, ProcessorTables]:
    """Two optometrists: A (general, dilation) 09-17 with lunch 12-13, B (general) 09-13."""
    tables = ProcessorTables({}, {}, {}, {})
    proc = AvailabilityProcessor(tables, region="eu")
    at = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    hours = {d: [{"open": "09:00", "close": "18:00"}] for d in range(7)}
    roster: list[EventPayload] = [
        StoreRegistered(store_id=store_id, name="S", region="eu", timezone=tz,
                        opening_hours=hours, slot_minutes=15),
        ExamTypeDefined(code="standard", name="Standard", duration_minutes=30,
                        required_skill="general"),
        ExamTypeDefined(code="dilated", name="Dilated", duration_minutes=60,
                        required_skill="dilation"),
        OptometristJoined(optometrist_id="A", name="A", skills=["general", "dilation"],
                          home_store_id=store_id, store_ids=[store_id]),
        OptometristJoined(optometrist_id="B", name="B", skills=["general"],
                          home_store_id=store_id, store_ids=[store_id]),
        ShiftPublished(shift_id=f"A-{day}", optometrist_id="A", store_id=store_id, date=day,
                       start="09:00", end="17:00", breaks=[{"start": "12:00", "end": "13:00"}]),
        ShiftPublished(shift_id=f"B-{day}", optometrist_id="B", store_id=store_id, date=day,
                       start="09:00", end="13:00"),
    ]  # fmt: skip
    for payload in roster:
        proc.handle(env(store_id, payload, at), at)
    return proc, tables


def request(
    store_id: str,
    start: dt.datetime,
    *,
    key: str,
    customer: str = "cust-1",
    exam: str = "standard",
    channel: str = "web",
    optometrist: str | None = None,
    booking_id: str | None = None,
    now: dt.datetime,
) -> Envelope[Any]:
    cmd = RequestBooking(
        booking_id=booking_id or f"b-{key}", idempotency_key=key, channel=channel,
        customer=Customer(customer_ref=customer, name="Ann", locale="en"), exam_type=exam,
        slot_start=start, optometrist_id=optometrist, requested_at=now,
    )  # fmt: skip
    return env(store_id, cmd, now)
