"""Shifts and weekly templates in store-local time across DST changes, and their events."""

from datetime import UTC, date, datetime, time, timedelta

import pytest

from services.roster.adapters.events import shift_published, training_scheduled
from services.roster.domain.localtime import NonexistentLocalTime, subtract, to_utc
from services.roster.domain.model import DayPattern, TimeRange, Training, WeeklyTemplate
from services.roster.domain.rules import PlacedShift, RosterViolation, shift_interval
from services.roster.domain.templates import expand

NINE_TO_FIVE = DayPattern(TimeRange(time(9), time(17)), (TimeRange(time(12), time(13)),))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def template(store_id: str = "berlin") -> WeeklyTemplate:
    every_day = {d: NINE_TO_FIVE for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    return WeeklyTemplate("tpl", "o1", store_id, every_day)


def test_berlin_template_keeps_local_hours_across_spring_forward() -> None:
    shifts = expand(template(), date(2026, 3, 28), date(2026, 3, 30))
    events = [shift_published(s, "Europe/Berlin") for s in shifts]
    assert [(e.date, e.start, e.end) for e in events] == [
        (date(2026, 3, 28), "09:00", "17:00"),
        (date(2026, 3, 29), "09:00", "17:00"),
        (date(2026, 3, 30), "09:00", "17:00"),
    ]
    # CET (+01:00) on Saturday, CEST (+02:00) from Sunday 29 March
    assert [(e.start_utc, e.end_utc) for e in events] == [
        (utc(2026, 3, 28, 8), utc(2026, 3, 28, 16)),
        (utc(2026, 3, 29, 7), utc(2026, 3, 29, 15)),
        (utc(2026, 3, 30, 7), utc(2026, 3, 30, 15)),
    ]
    assert all(e.timezone == "Europe/Berlin" for e in events)
    assert [e.shift_id for e in events] == ["tpl-2026-03-28", "tpl-2026-03-29", "tpl-2026-03-30"]


def test_berlin_template_keeps_local_hours_across_fall_back() -> None:
    shifts = expand(template(), date(2026, 10, 24), date(2026, 10, 26))
    events = [shift_published(s, "Europe/Berlin") for s in shifts]
    assert [(e.start_utc, e.end_utc) for e in events] == [
        (utc(2026, 10, 24, 7), utc(2026, 10, 24, 15)),
        (utc(2026, 10, 25, 8), utc(2026, 10, 25, 16)),
        (utc(2026, 10, 26, 8), utc(2026, 10, 26, 16)),
    ]
    assert all((e.start, e.end) == ("09:00", "17:00") for e in events)


def test_shanghai_has_no_dst_so_utc_is_always_eight_hours_behind() -> None:
    shifts = expand(template("shanghai"), date(2026, 3, 28), date(2026, 3, 30))
    shifts += expand(template("shanghai"), date(2026, 10, 24), date(2026, 10, 26))
    for s in shifts:
        e = shift_published(s, "Asia/Shanghai")
        assert e.start_utc == datetime.combine(s.day, time(1), tzinfo=UTC)
        assert e.end_utc == datetime.combine(s.day, time(9), tzinfo=UTC)


def test_a_night_shift_across_the_gap_is_an_hour_shorter_and_one_across_fall_back_longer() -> None:
    spring = expand(
        WeeklyTemplate("n", "o1", "b", {"sun": DayPattern(TimeRange(time(0), time(6)))}),
        date(2026, 3, 29), date(2026, 3, 29),
    )[0]  # fmt: skip
    start, end = shift_interval(spring, "Europe/Berlin")
    assert end - start == timedelta(hours=5)
    autumn = expand(
        WeeklyTemplate("n", "o1", "b", {"sun": DayPattern(TimeRange(time(0), time(6)))}),
        date(2026, 10, 25), date(2026, 10, 25),
    )[0]  # fmt: skip
    start, end = shift_interval(autumn, "Europe/Berlin")
    assert end - start == timedelta(hours=7)


def test_a_shift_boundary_inside_the_spring_gap_is_refused() -> None:
    with pytest.raises(NonexistentLocalTime):
        to_utc(date(2026, 3, 29), time(2, 30), "Europe/Berlin")
    gap = expand(
        WeeklyTemplate("g", "o1", "b", {"sun": DayPattern(TimeRange(time(2, 30), time(6)))}),
        date(2026, 3, 29), date(2026, 3, 29),
    )[0]  # fmt: skip
    with pytest.raises(RosterViolation) as info:
        PlacedShift(gap, "Europe/Berlin").interval  # noqa: B018
    assert info.value.reason == "nonexistent_local_time"


def test_an_ambiguous_fall_back_time_means_its_first_occurrence() -> None:
    assert to_utc(date(2026, 10, 25), time(2, 30), "Europe/Berlin") == utc(2026, 10, 25, 0, 30)


def test_template_expansion_only_uses_the_template_weekdays() -> None:
    weekdays = WeeklyTemplate("w", "o1", "s", {"mon": NINE_TO_FIVE, "thu": NINE_TO_FIVE})
    days = [s.day for s in expand(weekdays, date(2026, 3, 23), date(2026, 4, 5))]
    assert days == [date(2026, 3, 23), date(2026, 3, 26), date(2026, 3, 30), date(2026, 4, 2)]
    assert expand(weekdays, date(2026, 3, 24), date(2026, 3, 25)) == []
    with pytest.raises(ValueError, match="unknown weekdays"):
        WeeklyTemplate("w", "o1", "s", {"funday": NINE_TO_FIVE})


def test_training_event_carries_its_utc_interval() -> None:
    t = Training("t", "o1", date(2026, 3, 29), TimeRange(time(14), time(16)), "Europe/Berlin")
    event = training_scheduled(t)
    assert (event.start_utc, event.end_utc) == (utc(2026, 3, 29, 12), utc(2026, 3, 29, 14))


def test_subtract_cuts_holes_out_of_intervals() -> None:
    day = [(utc(2026, 1, 1, 9), utc(2026, 1, 1, 17))]
    holes = [(utc(2026, 1, 1, 12), utc(2026, 1, 1, 13)), (utc(2026, 1, 1, 8), utc(2026, 1, 1, 10))]
    assert subtract(day, holes) == [
        (utc(2026, 1, 1, 10), utc(2026, 1, 1, 12)),
        (utc(2026, 1, 1, 13), utc(2026, 1, 1, 17)),
    ]
