"""Roster changes re-home confirmed bookings: reassigned to another free qualified optometrist
at the same time, else displaced with alternatives. Nothing is dropped, nothing double-booked."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from schemas.events.availability import StoreDayAvailability
from schemas.events.booking import BookingConfirmed, BookingDisplaced, BookingReassigned
from schemas.events.roster import (
    LeaveGranted,
    OptometristLeft,
    ShiftCancelled,
    TrainingScheduled,
)
from services.booking.domain.model import BookingStatus

from .storefixture import berlin_store, env, request

DAY = dt.date(2026, 12, 7)
NOW = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)


def at(hhmm: str) -> dt.datetime:
    """Berlin local time in December (UTC+1) as a UTC instant."""
    h, m = map(int, hhmm.split(":"))
    return dt.datetime(DAY.year, DAY.month, DAY.day, h - 1, m, tzinfo=dt.UTC)


def book(proc: Any, hhmm: str, key: str, exam: str = "standard", who: str | None = None) -> str:
    out = proc.handle(
        request("berlin", at(hhmm), key=key, customer=key, exam=exam, optometrist=who, now=NOW),
        NOW,
    )
    confirmed = [o.payload for o in out if isinstance(o.payload, BookingConfirmed)]
    assert confirmed, f"{key} was not booked"
    return str(confirmed[0].optometrist_id)


def of(outputs: list[Any], cls: type) -> list[Any]:
    return [o.payload for o in outputs if isinstance(o.payload, cls)]


def assert_no_overlaps(tables: Any) -> None:
    by_optometrist: dict[str, list[tuple[int, int]]] = {}
    for b in tables.bookings.values():
        if b["status"] == BookingStatus.CONFIRMED.value:
            by_optometrist.setdefault(b["optometrist_id"], []).append((b["start"], b["end"]))
    for intervals in by_optometrist.values():
        intervals.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(intervals))


def test_leave_on_a_day_with_five_bookings_reassigns_what_it_can_and_displaces_the_rest():
    proc, tables = berlin_store()
    # A: general+dilation 09-17 (lunch 12-13); B: general 09-13.
    assert book(proc, "09:00", "k1", who="A") == "A"
    assert book(proc, "09:00", "k2", who="B") == "B"
    assert book(proc, "10:00", "k3", who="A") == "A"
    assert book(proc, "14:00", "k4") == "A"
    assert book(proc, "15:00", "k5", exam="dilated") == "A"
    leave = LeaveGranted(leave_id="L1", optometrist_id="A", start_date=DAY, end_date=DAY)
    outputs = proc.handle(env("berlin", leave, NOW), NOW)

    moved = {e.booking_id: e for e in of(outputs, BookingReassigned)}
    displaced = {e.booking_id: e for e in of(outputs, BookingDisplaced)}
    assert set(moved) == {"b-k3"}  # B is free at 10:00
    assert moved["b-k3"].to_optometrist_id == "B" and moved["b-k3"].cause == "leave"
    assert set(displaced) == {"b-k1", "b-k4", "b-k5"}  # B busy at 9, off at 14, no dilation
    assert all(0 < len(d.alternatives) <= 3 for d in displaced.values() if d.booking_id == "b-k1")
    statuses = {k: v["status"] for k, v in tables.bookings.items()}
    assert statuses == {
        "b-k1": "displaced", "b-k2": "confirmed", "b-k3": "confirmed",
        "b-k4": "displaced", "b-k5": "displaced",
    }  # fmt: skip
    assert tables.bookings["b-k3"]["optometrist_id"] == "B"
    assert_no_overlaps(tables)
    (view,) = of(outputs, StoreDayAvailability)
    assert view.exam_types["dilated"].free_count == 0  # only A does dilation, and A is away
    # Applying the same leave again changes nothing more.
    assert not of(proc.handle(env("berlin", leave, NOW), NOW), BookingDisplaced)


def test_training_frees_only_its_hours_and_a_cancelled_shift_strands_its_bookings():
    proc, tables = berlin_store()
    book(proc, "09:00", "k1", who="A")
    book(proc, "15:00", "k2", who="A")
    training = TrainingScheduled(
        training_id="T1", optometrist_id="A", date=DAY, start="08:30", end="09:30"
    )
    out = proc.handle(env("berlin", training, NOW), NOW)
    assert [e.booking_id for e in of(out, BookingReassigned)] == ["b-k1"]  # to B at 09:00
    cancelled = ShiftCancelled(shift_id=f"A-{DAY}", optometrist_id="A", store_id="berlin", date=DAY)
    out = proc.handle(env("berlin", cancelled, NOW), NOW)
    (gone,) = of(out, BookingDisplaced)
    assert gone.booking_id == "b-k2" and gone.cause == "shift_cancelled"
    assert_no_overlaps(tables)


def test_past_bookings_are_never_moved():
    proc, tables = berlin_store()
    book(proc, "09:00", "k1", who="A")
    later = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)  # after the 09:00 exam
    leave = LeaveGranted(leave_id="L1", optometrist_id="A", start_date=DAY, end_date=DAY)
    out = proc.handle(env("berlin", leave, later), later)
    assert not of(out, BookingDisplaced) and not of(out, BookingReassigned)
    assert tables.bookings["b-k1"]["status"] == "confirmed"


def test_an_optometrist_leaving_is_bookable_until_the_day_before_and_re_homed_from_then():
    proc, tables = berlin_store()
    book(proc, "10:00", "k1", who="A")
    left = OptometristLeft(optometrist_id="A", effective_date=DAY + dt.timedelta(days=1))
    assert not of(proc.handle(env("berlin", left, NOW), NOW), BookingReassigned)
    assert tables.bookings["b-k1"]["status"] == "confirmed"  # DAY is still worked
    book(proc, "11:00", "k2", who="A")  # and still bookable
    left_now = OptometristLeft(optometrist_id="A", effective_date=DAY)
    out = proc.handle(env("berlin", left_now, NOW), NOW)
    assert {e.booking_id for e in of(out, BookingReassigned)} == {"b-k1", "b-k2"}
    assert {e.cause for e in of(out, BookingReassigned)} == {"optometrist_left"}
    assert_no_overlaps(tables)
