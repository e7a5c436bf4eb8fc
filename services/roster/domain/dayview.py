"""The optometrist's day: published shifts minus breaks, training and leave, the bookings
the booking service confirmed, and the free gaps between them; all in store-local time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from services.roster.domain.localtime import Interval, local_iso, subtract, utc_interval
from services.roster.domain.model import Leave, Training
from services.roster.domain.rules import PlacedShift

ACTIVE_BOOKING_STATES = frozenset({"confirmed", "checked_in", "completed"})


@dataclass(frozen=True)
class BookingSlot:
    booking_id: str
    store_id: str
    exam_type: str
    start: datetime
    end: datetime
    status: str
    timezone: str


def day_schedule(
    optometrist_id: str,
    day: date,
    shifts: list[PlacedShift],
    leave: list[Leave],
    training: list[Training],
    bookings: list[BookingSlot],
) -> dict[str, Any]:
    on_leave = next((lv for lv in leave if lv.covers(day)), None)
    away = [
        utc_interval(t.day, t.hours.start, t.hours.end, t.timezone) for t in training
        if t.day == day
    ]  # fmt: skip
    active = [b for b in bookings if b.status in ACTIVE_BOOKING_STATES]
    taken = [(b.start, b.end) for b in active]
    shift_views, gaps = [], []
    for placed in sorted(shifts, key=lambda p: p.interval):
        shift, tz = placed.shift, placed.timezone
        breaks = [utc_interval(shift.day, b.start, b.end, tz) for b in shift.breaks]
        working = [] if on_leave else subtract([placed.interval], breaks + away)
        shift_views.append(
            {
                "shift_id": shift.shift_id,
                "store_id": shift.store_id,
                "timezone": tz,
                **_span(placed.interval, tz),
                "breaks": [_span(b, tz) for b in breaks],
                "working": [_span(w, tz) for w in working],
            }
        )
        gaps += [{"store_id": shift.store_id, **_span(g, tz)} for g in subtract(working, taken)]
    return {
        "optometrist_id": optometrist_id,
        "date": day.isoformat(),
        "on_leave": None if on_leave is None else {
            "leave_id": on_leave.leave_id, "kind": on_leave.kind,
        },
        "shifts": shift_views,
        "training": [
            {"training_id": t.training_id, "timezone": t.timezone, **_span(iv, t.timezone)}
            for t, iv in zip([t for t in training if t.day == day], away, strict=True)
        ],
        "bookings": [
            {
                "booking_id": b.booking_id,
                "store_id": b.store_id,
                "exam_type": b.exam_type,
                "status": b.status,
                **_span((b.start, b.end), b.timezone),
            }
            for b in sorted(active, key=lambda b: b.start)
        ],
        "gaps": gaps,
    }  # fmt: skip


def _span(interval: Interval, tz: str) -> dict[str, Any]:
    start, end = interval
    return {
        "start": local_iso(start, tz),
        "end": local_iso(end, tz),
        "start_utc": start.isoformat(),
        "end_utc": end.isoformat(),
        "minutes": int((end - start).total_seconds() // 60),
    }
