"""Roster validation rules (pure)."""

from datetime import date, time

import pytest

from services.roster.domain.model import Leave, Optometrist, Shift, Store, TimeRange, Training
from services.roster.domain.rules import (
    PlacedShift,
    RosterViolation,
    check_leave,
    check_no_overlap,
    check_opening_hours,
    check_shift,
    check_training,
)

DAY = date(2026, 6, 10)  # a Wednesday


def store(store_id: str = "s1", tz: str = "Europe/Berlin") -> Store:
    hours = (TimeRange(time(9), time(12)), TimeRange(time(13), time(19)))
    return Store(store_id, store_id, "eu", tz, {"wed": hours, "thu": hours})


OPT = Optometrist("o1", "O", frozenset({"general"}), "s1", ("s1", "s2"))


def shift(start: int, end: int, store_id: str = "s1", shift_id: str = "a", **kw: object) -> Shift:
    return Shift(shift_id, "o1", store_id, kw.get("day", DAY), TimeRange(time(start), time(end)),  # type: ignore[arg-type]
                 kw.get("breaks", ()))  # type: ignore[arg-type]  # fmt: skip


def reason(call: object) -> str:
    with pytest.raises(RosterViolation) as info:
        call()  # type: ignore[operator]
    return info.value.reason


def test_a_shift_inside_one_opening_interval_is_fine() -> None:
    check_shift(shift(13, 19), store(), OPT)


@pytest.mark.parametrize(
    ("start", "end"), [(8, 12), (9, 13), (11, 14), (18, 20)], ids=["early", "late", "lunch", "eve"]
)
def test_a_shift_outside_opening_hours_is_refused(start: int, end: int) -> None:
    assert reason(lambda: check_shift(shift(start, end), store(), OPT)) == "outside_opening_hours"


def test_a_closed_day_refuses_every_shift() -> None:
    friday = date(2026, 6, 12)
    assert reason(lambda: check_shift(shift(9, 12, day=friday), store(), OPT)) == (
        "outside_opening_hours"
    )


def test_overlapping_opening_hours_are_refused_but_touching_ones_are_fine() -> None:
    def hours(*ranges: tuple[int, int]) -> Store:
        day = tuple(TimeRange(time(a), time(b)) for a, b in ranges)
        return Store("s1", "s1", "eu", "Europe/Berlin", {"mon": day})

    check_opening_hours(hours((13, 18), (9, 13)))
    assert reason(lambda: check_opening_hours(hours((12, 18), (9, 13)))) == (
        "overlapping_opening_hours"
    )


def test_a_break_outside_the_shift_is_refused() -> None:
    lunch = (TimeRange(time(12), time(14)),)
    bad = shift(13, 19, breaks=lunch)
    assert reason(lambda: check_shift(bad, store(), OPT)) == "break_outside_shift"


def test_a_store_the_optometrist_does_not_work_at_is_refused() -> None:
    other = store("s9")
    assert reason(lambda: check_shift(shift(13, 19, "s9"), other, OPT)) == "not_assigned_to_store"


def test_overlap_is_checked_across_stores_in_utc() -> None:
    # 13:00-19:00 Shanghai is 07:00-13:00 Berlin time (summer): it overlaps 09:00-12:00 Berlin.
    berlin = PlacedShift(shift(9, 12, "s1", "berlin"), "Europe/Berlin")
    shanghai = PlacedShift(shift(13, 19, "s2", "shanghai"), "Asia/Shanghai")
    with pytest.raises(RosterViolation) as info:
        check_no_overlap(berlin, [shanghai])
    assert info.value.reason == "overlapping_shift"
    assert info.value.status == 409
    assert info.value.extra["conflicting_shift_id"] == "shanghai"
    # the same wall-clock hours in the same zone as two stores touching end-to-start are fine
    check_no_overlap(berlin, [PlacedShift(shift(12, 13, "s2", "next"), "Europe/Berlin")])
    # and 13:00-17:00 Shanghai (07:00-11:00 Berlin) vs a Berlin afternoon does not overlap
    check_no_overlap(
        PlacedShift(shift(13, 19, "s1", "pm"), "Europe/Berlin"),
        [PlacedShift(shift(13, 17, "s2", "cn"), "Asia/Shanghai")],
    )


def test_a_published_version_awaiting_its_change_names_itself_in_the_refusal() -> None:
    mine = PlacedShift(shift(9, 12, "s2", "new"), "Europe/Berlin")
    cancel_pending = PlacedShift(shift(9, 17, "s1", "old"), "Europe/Berlin", superseded=True)
    with pytest.raises(RosterViolation) as info:
        check_no_overlap(mine, [cancel_pending])
    assert (info.value.status, info.value.reason) == (409, "overlapping_published_shift")
    assert info.value.extra["conflicting_shift_id"] == "old"


def test_a_shift_never_overlaps_itself() -> None:
    mine = PlacedShift(shift(9, 12), "Europe/Berlin")
    check_no_overlap(mine, [mine])


def test_leave_cannot_start_in_the_past_but_today_is_fine() -> None:
    today = date(2026, 6, 10)
    check_leave(Leave("l1", "o1", today, today, "sick"), today)
    past = Leave("l2", "o1", date(2026, 6, 9), date(2026, 6, 11))
    assert reason(lambda: check_leave(past, today)) == "leave_in_past"
    backwards = Leave("l3", "o1", date(2026, 6, 12), date(2026, 6, 11))
    assert reason(lambda: check_leave(backwards, today)) == "invalid_range"


def test_one_leave_is_at_most_a_year() -> None:
    today = date(2026, 6, 10)
    check_leave(Leave("year", "o1", today, date(2027, 6, 10)), today)  # 366 days
    typo = Leave("typo", "o1", today, date(2999, 6, 10))
    assert reason(lambda: check_leave(typo, today)) == "leave_too_long"


def test_training_in_the_past_and_in_a_dst_gap_is_refused() -> None:
    hours = TimeRange(time(2), time(3))
    gap = Training("t1", "o1", date(2026, 3, 29), hours, "Europe/Berlin")
    assert reason(lambda: check_training(gap, date(2026, 3, 1))) == "nonexistent_local_time"
    assert reason(lambda: check_training(gap, date(2026, 3, 30))) == "training_in_past"
