"""Edges of the pure decisions: shifts and opening hours that meet, the hour repeated in autumn,
a roster change stranding several bookings at once, exam types taken off the menu, the
alternatives a failed reschedule offers, and lifecycle commands at times that make no sense."""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

from services.booking.domain import decisions as d
from services.booking.domain.calendar import to_local
from services.booking.domain.model import (
    Booking,
    BookingStatus,
    Day,
    ExamSpec,
    Reason,
    Shift,
    StoreConfig,
)

BERLIN = "Europe/Berlin"
MONDAY = dt.date(2026, 12, 7)


def at(hhmm: str, date: dt.date = MONDAY, tz: str = BERLIN) -> int:
    wall = dt.datetime.combine(date, dt.time.fromisoformat(hhmm), ZoneInfo(tz))
    return int(wall.timestamp())


NOW = at("08:00")


def local(epochs: tuple[int, ...] | list[int], tz: str = BERLIN) -> list[str]:
    return [to_local(e, tz).strftime("%H:%M%z") for e in epochs]


def store(
    optometrists: str = "A", hours: list[tuple[str, str]] | None = None, tz: str = BERLIN
) -> StoreConfig:
    return StoreConfig(
        "s", tz, opening_hours={"mon": hours or [("09:00", "18:00")], "sun": hours or []},
        exam_types={"std": ExamSpec("std", 30, "general")},
        optometrists={o: frozenset({"general"}) for o in optometrists}, registered=True,
    )  # fmt: skip


def shift(who: str, start: str, end: str, date: dt.date = MONDAY) -> Shift:
    return Shift(f"{who}-{start}", who, date, start, end)


def day_of(*shifts: Shift, date: dt.date = MONDAY) -> Day:
    return Day(date, shifts={s.shift_id: s for s in shifts})


def book(
    cfg: StoreConfig, day: Day, booking_id: str, start: int, who: str | None = None
) -> d.Accepted | d.Rejected:
    request = d.BookRequest(booking_id, f"c-{booking_id}", "std", start, booking_id, "web", who)
    return d.decide_booking(cfg, day, request, min(NOW, start - 3600))


def test_an_exam_across_the_join_of_two_back_to_back_shifts_is_booked_and_offered():
    cfg = store()
    day = day_of(shift("A", "09:00", "13:00"), shift("A", "13:00", "17:00"))
    assert d.working_windows(cfg, day, "A") == [(at("09:00"), at("17:00"))]
    assert at("12:45") in [s for s, _ in d.free_starts(cfg, day, "std")]
    assert isinstance(book(cfg, day, "b", at("12:45")), d.Accepted)


def test_an_exam_across_the_join_of_two_opening_intervals_is_booked():
    cfg = store(hours=[("09:00", "12:00"), ("12:00", "18:00")])
    day = day_of(shift("A", "09:00", "17:00"))
    assert d.check_slot(cfg, "std", at("11:45"), NOW) is None
    assert isinstance(book(cfg, day, "b", at("11:45")), d.Accepted)


def test_the_hour_repeated_in_autumn_is_offered_twice_and_both_runs_can_be_booked():
    london, sunday = "Europe/London", dt.date(2026, 10, 25)  # 01:00-01:59 happens twice
    cfg = store(hours=[("00:00", "03:00")], tz=london)
    day = day_of(shift("A", "00:00", "03:00", sunday), date=sunday)
    first = at("01:15", sunday, london)
    second = first + 3600  # 01:15 again, an hour later, in GMT
    grid = d.grid(cfg, sunday)
    assert first in grid and second in grid
    assert local([first, second], london) == ["01:15+0100", "01:15+0000"]
    assert len(grid) == 4 * 4  # four elapsed hours of quarter-hour starts
    offered = [s for s, _ in d.free_starts(cfg, day, "std")]
    assert first in offered and second in offered
    assert isinstance(book(cfg, day, "first", first), d.Accepted)
    assert isinstance(book(cfg, day, "second", second), d.Accepted)


def test_a_displaced_customer_is_offered_only_what_stays_free_after_the_re_homing():
    """A's shift goes: b1 (10:00) cannot move (B is busy then), b2 (10:30) moves to B. The
    10:30 start freed for a moment is B's again once b2 is there: not an alternative."""
    cfg = store("AB")
    day = day_of(shift("A", "10:00", "11:00"), shift("B", "10:00", "11:00"))
    for booking_id, hhmm, who in [("b1", "10:00", "A"), ("b2", "10:30", "A"), ("b3", "10:00", "B")]:
        assert isinstance(book(cfg, day, booking_id, at(hhmm), who), d.Accepted)
    del day.shifts["A-10:00"]
    outcomes = d.rehome(cfg, day, NOW)
    assert [type(o).__name__ for o in outcomes] == ["Displaced", "Reassigned"]
    displaced = outcomes[0]
    assert isinstance(displaced, d.Displaced) and displaced.busy.booking_id == "b1"
    for start in displaced.alternatives:  # each one can really be booked
        assert isinstance(book(cfg, day.copy(), "again", start), d.Accepted)
    assert at("10:30") not in displaced.alternatives


def test_an_exam_type_taken_off_the_menu_keeps_its_bookings_through_roster_changes():
    cfg = store("AB")
    day = day_of(shift("A", "09:00", "12:00"))
    assert isinstance(book(cfg, day, "b1", at("10:00"), "A"), d.Accepted)
    cfg.exam_types["std"] = dataclasses.replace(cfg.exam_types["std"], active=False)
    day.shifts["B-13:00"] = shift("B", "13:00", "17:00")  # a change about someone else
    assert d.rehome(cfg, day, NOW) == []
    assert [b.booking_id for b in day.busy["A"]] == ["b1"]
    assert book(cfg, day, "b2", at("11:00")) == d.Rejected(
        Reason.UNKNOWN_EXAM_TYPE, "no exam type 'std' at this store"
    )


def test_a_displaced_booking_of_an_exam_off_the_menu_is_offered_no_alternatives():
    cfg = store("A")
    day = day_of(shift("A", "09:00", "12:00"))
    assert isinstance(book(cfg, day, "b1", at("10:00")), d.Accepted)
    cfg.exam_types["std"] = dataclasses.replace(cfg.exam_types["std"], active=False)
    del day.shifts["A-09:00"]
    day.shifts["A-11:00"] = shift("A", "11:00", "12:00")
    (outcome,) = d.rehome(cfg, day, NOW)
    assert outcome == d.Displaced(outcome.busy, "A", ())


def test_a_failed_reschedule_offers_starts_overlapping_the_booking_s_own_slot_but_not_it():
    cfg = store()
    day = day_of(shift("A", "09:30", "11:15"))
    mine = book(cfg, day, "mine", at("10:00"))
    assert isinstance(mine, d.Accepted)
    for booking_id, hhmm in [("o1", "09:30"), ("o2", "10:45")]:
        assert isinstance(book(cfg, day, booking_id, at(hhmm)), d.Accepted)
    refused = d.reschedule(cfg, day, day, mine.booking, at("10:45"), NOW)
    assert isinstance(refused, d.Rejected) and refused.reason == Reason.SLOT_TAKEN
    assert local(refused.alternatives) == ["10:15+0100"]  # overlaps 10:00-10:30, its own
    moved = d.reschedule(cfg, day, day, mine.booking, refused.alternatives[0], NOW)
    assert isinstance(moved, d.Rescheduled)


def _cancel_at(cfg: StoreConfig, start: int, now: int, by_customer: bool = True) -> d.Cancelled:
    date = to_local(start, cfg.timezone).date()
    day = day_of(shift("A", "09:00", "18:00", date), date=date)
    booked = d.decide_booking(
        cfg, day, d.BookRequest("b", "c", "std", start, "b", "web", "A"), start - 3 * 86400
    )
    assert isinstance(booked, d.Accepted)
    outcome = d.cancel(cfg, day, booked.booking, now, by_customer)
    assert isinstance(outcome, d.Cancelled)
    return outcome


def test_the_notice_for_a_late_cancellation_is_counted_in_local_clock_time_across_dst():
    """Berlin's clocks go forward early on Sunday 29 March 2026: "24 hours before" Sunday
    10:00 is Saturday 10:00 on the clock, 23 elapsed hours. On 25 October they go back, and
    it is 25 elapsed hours."""
    cfg = store(hours=[("09:00", "18:00")])  # on Sundays too
    spring = at("10:00", dt.date(2026, 3, 29))
    on_time = at("10:00", dt.date(2026, 3, 28))
    assert spring - on_time == 23 * 3600
    assert not _cancel_at(cfg, spring, on_time).late
    assert _cancel_at(cfg, spring, on_time + 60).late
    autumn = at("10:00", dt.date(2026, 10, 25))
    on_time = at("10:00", dt.date(2026, 10, 24))
    assert autumn - on_time == 25 * 3600
    assert not _cancel_at(cfg, autumn, on_time).late
    assert _cancel_at(cfg, autumn, on_time + 60).late  # 24 h 59 min before, but past 10:00


def test_a_stores_own_cancellation_is_never_late():
    cfg = store()
    start = at("10:00")
    assert _cancel_at(cfg, start, start - 3600).late
    by_store = _cancel_at(cfg, start, start - 3600, by_customer=False)
    assert not by_store.late and by_store.minutes_before_start == 60


def _booked(cfg: StoreConfig, hhmm: str) -> tuple[Day, Booking]:
    day = day_of(shift("A", "09:00", "18:00"))
    booked = book(cfg, day, "b", at(hhmm))
    assert isinstance(booked, d.Accepted)
    return day, booked.booking


def test_a_booking_whose_exam_has_ended_can_be_neither_cancelled_nor_moved():
    cfg = store()
    day, booking = _booked(cfg, "10:00")  # 10:00-10:30
    during = d.cancel(cfg, day, booking, at("10:15"))  # a late customer may still cancel
    assert isinstance(during, d.Cancelled) and during.minutes_before_start == -15
    for ended in (at("10:30"), at("15:00")):
        day, booking = _booked(cfg, "10:00")
        refused = d.cancel(cfg, day, booking, ended)
        assert isinstance(refused, d.Rejected), "a missed exam must not become a cancellation"
        assert refused.reason == Reason.INVALID_TRANSITION and "no-show" in refused.detail
        moved = d.reschedule(cfg, day, day, booking, at("16:00"), ended)
        assert isinstance(moved, d.Rejected) and moved.reason == Reason.INVALID_TRANSITION
        assert [b.booking_id for b in day.busy["A"]] == ["b"]  # nothing changed


def test_a_no_show_is_marked_from_the_start_and_completion_follows_check_in():
    cfg = store()
    _, booking = _booked(cfg, "09:00")  # Monday 09:00 Berlin, 08:00 UTC
    early = d.transition(booking, BookingStatus.NO_SHOW, at("08:59"))
    assert isinstance(early, d.Rejected) and early.reason == Reason.INVALID_TRANSITION
    assert isinstance(d.transition(booking, BookingStatus.NO_SHOW, at("09:00")), Booking)
    not_checked_in = d.transition(booking, BookingStatus.COMPLETED, at("09:30"))
    assert isinstance(not_checked_in, d.Rejected)
