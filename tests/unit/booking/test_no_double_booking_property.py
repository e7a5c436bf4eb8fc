"""Property: whatever the sequence of book/cancel/reschedule commands and roster changes
(time off, cancelled shifts) in between, no optometrist ever has two confirmed bookings that
overlap, every confirmed booking lies in its optometrist's working time, the busy index matches
the confirmed bookings, and no booking is lost: re-homing moves or displaces, never drops."""

from __future__ import annotations

import datetime as dt
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.booking.domain import decisions
from services.booking.domain.model import Booking, BookingStatus, Day, ExamSpec, Shift, StoreConfig

DAY = dt.date(2026, 3, 29)  # Berlin DST change day, to keep the time math honest
TZ = "Europe/Berlin"
NOW = int(dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp())
FIRST = int(dt.datetime(2026, 3, 29, 7, 0, tzinfo=dt.UTC).timestamp())  # 09:00 local

CFG = StoreConfig(
    store_id="s",
    timezone=TZ,
    slot_minutes=15,
    opening_hours={"sun": [("09:00", "18:00")]},
    exam_types={
        "std": ExamSpec("std", 30, "general"),
        "child": ExamSpec("child", 45, "pediatric"),
        "dilated": ExamSpec("dilated", 60, "dilation"),
    },
    optometrists={
        "A": frozenset({"general", "dilation"}),
        "B": frozenset({"general", "pediatric"}),
        "C": frozenset({"general", "pediatric", "dilation"}),
    },
    registered=True,
)

slot = st.integers(min_value=-2, max_value=40).map(
    lambda i: FIRST + i * 15 * 60 + (i % 7 == 3) * 60
)
book = st.tuples(
    st.just("book"),
    slot,
    st.sampled_from(["std", "child", "dilated"]),
    st.sampled_from([None, "A", "B", "C"]),
    st.integers(0, 5),
)
cancel = st.tuples(st.just("cancel"), st.integers(0, 50))
move = st.tuples(st.just("move"), st.integers(0, 50), slot, st.sampled_from([None, "A", "B", "C"]))
away = st.tuples(st.just("away"), st.sampled_from(["A", "B", "C"]), slot, st.integers(1, 16))
drop_shift = st.tuples(st.just("drop_shift"), st.sampled_from(["a", "b", "c"]))


def fresh_day() -> Day:
    return Day(
        DAY,
        shifts={
            "a": Shift("a", "A", DAY, "09:00", "17:00", (("12:00", "13:00"),)),
            "b": Shift("b", "B", DAY, "10:00", "18:00"),
            "c": Shift("c", "C", DAY, "09:00", "12:30"),
        },
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(book, cancel, move, away, drop_shift), max_size=60))
def test_no_two_confirmed_bookings_overlap_for_one_optometrist(commands):
    day = fresh_day()
    bookings: dict[str, Booking] = {}
    for n, command in enumerate(commands):
        if command[0] == "book":
            _, start, exam, who, customer = command
            req = decisions.BookRequest(
                f"b{n}", f"cust{customer}", exam, start, f"k{n}", "web", who
            )
            outcome = decisions.decide_booking(CFG, day, req, NOW)
            if isinstance(outcome, decisions.Accepted):
                bookings[outcome.booking.booking_id] = outcome.booking
        elif command[0] in ("away", "drop_shift"):
            if command[0] == "away":
                _, who, start, quarters = command
                day.absences[f"t{n}"] = (who, start, start + quarters * 15 * 60)
            else:
                day.shifts.pop(command[1], None)
            rehome(day, bookings)
        elif bookings:
            target = list(bookings.values())[command[1] % len(bookings)]
            if command[0] == "cancel":
                result = decisions.cancel(CFG, day, target, NOW)
                if isinstance(result, decisions.Cancelled):
                    bookings[target.booking_id] = result.booking
            else:
                moved = decisions.reschedule(CFG, day, day, target, command[2], NOW, command[3])
                if isinstance(moved, decisions.Rescheduled):
                    bookings[target.booking_id] = moved.new
        check_invariants(day, bookings)


def rehome(day: Day, bookings: dict[str, Booking]) -> None:
    before = {b.booking_id for b in bookings.values() if b.status == BookingStatus.CONFIRMED}
    outcomes = decisions.rehome(CFG, day, NOW)
    touched = [o.busy.booking_id for o in outcomes]
    assert len(touched) == len(set(touched)) and set(touched) <= before
    for outcome in outcomes:
        booking = bookings[outcome.busy.booking_id]
        if isinstance(outcome, decisions.Reassigned):
            assert outcome.from_optometrist == booking.optometrist_id != outcome.to_optometrist
            booking.optometrist_id = outcome.to_optometrist
        else:
            booking.status = BookingStatus.DISPLACED


def check_invariants(day: Day, bookings: dict[str, Booking]) -> None:
    confirmed = [b for b in bookings.values() if b.status == BookingStatus.CONFIRMED]
    by_optometrist: dict[str, list[Booking]] = {}
    for b in confirmed:
        by_optometrist.setdefault(b.optometrist_id, []).append(b)
        # every confirmed booking sits inside its optometrist's working time and the exam fits
        windows = decisions.working_windows(CFG, day, b.optometrist_id)
        assert any(s <= b.start and b.end <= e for s, e in windows)
        assert CFG.exam_types[b.exam_type].required_skill in CFG.optometrists[b.optometrist_id]
    for items in by_optometrist.values():
        items.sort(key=lambda b: b.start)
        for earlier, later in itertools.pairwise(items):
            assert earlier.end <= later.start, (earlier, later)
    busy = {(o, x.booking_id, x.start, x.end) for o, xs in day.busy.items() for x in xs}
    expected = {(b.optometrist_id, b.booking_id, b.start, b.end) for b in confirmed}
    assert busy == expected
