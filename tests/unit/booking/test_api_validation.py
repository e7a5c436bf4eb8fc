"""Pre-produce checks of the booking API: grid, opening hours (DST-correct), past, catalog."""

from __future__ import annotations

import datetime as dt

import pytest

from optisync_common.problems import ProblemError
from schemas.events.roster import ExamTypeDefined, StoreHoursChanged, StoreRegistered
from services.booking.adapters.views import StoreCatalog, apply_roster_event
from services.booking.api.validation import check_slot, exam_type_of

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
EVERY_DAY = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def catalog(
    timezone: str,
    hours: dict[str, list[tuple[str, str]]],
    slot_minutes: int = 15,
    exams: dict[str, int] | None = None,
) -> StoreCatalog:
    store = StoreRegistered(
        store_id="s1", name="Store", region="eu", timezone=timezone, slot_minutes=slot_minutes,
        opening_hours={d: [{"open": o, "close": c} for o, c in iv] for d, iv in hours.items()},
    )  # fmt: skip
    result = apply_roster_event(None, store)
    for code, minutes in (exams or {"std": 30, "long": 60, "dilated": 90}).items():
        exam = ExamTypeDefined(
            code=code, name=code, duration_minutes=minutes, required_skill="general"
        )
        result = apply_roster_event(result, exam)
    assert result is not None
    return result


def check(cat: StoreCatalog, start: str, exam: str = "std", now: dt.datetime = NOW) -> dt.datetime:
    return check_slot(cat, exam_type_of(cat, exam), dt.datetime.fromisoformat(start), now)


def code_of(cat: StoreCatalog, start: str, exam: str = "std", now: dt.datetime = NOW) -> str:
    with pytest.raises(ProblemError) as info:
        check(cat, start, exam, now)
    assert info.value.status == 422
    return info.value.code


BERLIN = catalog("Europe/Berlin", {d: [("09:00", "18:00")] for d in EVERY_DAY})


def test_a_valid_slot_comes_back_in_utc():
    assert check(BERLIN, "2026-03-10T09:30:00+01:00") == dt.datetime(
        2026, 3, 10, 8, 30, tzinfo=dt.UTC
    )


@pytest.mark.parametrize(
    "start",
    ["2026-03-10T09:40:00+01:00", "2026-03-10T09:30:30+01:00", "2026-03-10T09:30:00.5+01:00"],
)
def test_times_off_the_grid_are_refused(start):
    assert code_of(BERLIN, start) == "not_on_grid"


def test_the_grid_follows_the_store_slot_length():
    twenty = catalog("Europe/Berlin", {d: [("09:00", "18:00")] for d in EVERY_DAY}, slot_minutes=20)
    assert check(twenty, "2026-03-10T09:40:00+01:00")
    assert code_of(twenty, "2026-03-10T09:45:00+01:00") == "not_on_grid"


def test_the_grid_is_on_local_wall_time_not_utc():
    # Kathmandu is UTC+05:45: 09:00 local is 03:15Z, on a 30-minute grid locally.
    kathmandu = catalog("Asia/Kathmandu", {d: [("09:00", "18:00")] for d in EVERY_DAY}, 30)
    assert check(kathmandu, "2026-03-10T03:15:00Z")
    assert code_of(kathmandu, "2026-03-10T03:00:00Z") == "not_on_grid"


@pytest.mark.parametrize("start", ["2026-02-28T09:00:00+01:00", "2026-03-01T01:00:00+01:00"])
def test_past_and_present_slots_are_refused(start):
    assert code_of(BERLIN, start) == "in_past"


def test_naive_datetimes_are_refused():
    with pytest.raises(ProblemError) as info:
        check_slot(BERLIN, exam_type_of(BERLIN, "std"), dt.datetime(2026, 3, 10, 9), NOW)
    assert info.value.code == "naive_datetime"


@pytest.mark.parametrize(
    ("start", "exam", "ok"),
    [
        ("2026-03-10T17:30:00+01:00", "std", True),  # ends exactly at closing
        ("2026-03-10T17:45:00+01:00", "std", False),  # would run past closing
        ("2026-03-10T08:45:00+01:00", "std", False),  # before opening
        ("2026-03-10T17:00:00+01:00", "long", True),
        ("2026-03-10T17:15:00+01:00", "long", False),
    ],
)
def test_the_whole_exam_must_fit_the_opening_hours(start, exam, ok):
    if ok:
        assert check(BERLIN, start, exam)
    else:
        assert code_of(BERLIN, start, exam) == "outside_opening_hours"


def test_berlin_spring_forward_day_uses_summer_time_for_opening_hours():
    # 2026-03-29: clocks jump 02:00 -> 03:00. 09:00 local is 07:00Z that day, 08:00Z the day before.
    assert check(BERLIN, "2026-03-29T07:00:00Z")
    assert code_of(BERLIN, "2026-03-29T06:45:00Z") == "outside_opening_hours"  # 08:45 CEST
    assert check(BERLIN, "2026-03-28T08:00:00Z")
    assert code_of(BERLIN, "2026-03-28T07:00:00Z") == "outside_opening_hours"  # 08:00 CET
    # 17:30 CEST + 30 min ends at 18:00; with yesterday's offset it would look like 16:30.
    assert check(BERLIN, "2026-03-29T15:30:00Z")
    assert code_of(BERLIN, "2026-03-29T16:00:00Z") == "outside_opening_hours"


def test_an_exam_across_the_dst_gap_lasts_its_real_duration():
    night = catalog("Europe/Berlin", {"sun": [("01:00", "04:00")]})
    # 01:30 CET + 60 min = 03:30 CEST (the wall clock moves two hours, the exam lasts one).
    assert check(night, "2026-03-29T01:30:00+01:00", "long")
    assert check(night, "2026-03-29T03:00:00+02:00", "long")  # ends exactly at 04:00 CEST
    assert code_of(night, "2026-03-29T03:15:00+02:00", "long") == "outside_opening_hours"
    # 90 minutes from 01:45 CET end at 04:15 CEST: past closing, although 01:45 + 1:30 = 03:15.
    assert code_of(night, "2026-03-29T01:45:00+01:00", "dilated") == "outside_opening_hours"


def test_berlin_fall_back_day_both_two_thirty_instants_are_on_the_grid():
    night = catalog("Europe/Berlin", {"sun": [("01:00", "05:00")]})
    # 2026-10-25: 02:30 happens twice (CEST then CET); both instants are bookable.
    assert check(night, "2026-10-25T00:30:00Z")  # 02:30 CEST
    assert check(night, "2026-10-25T01:30:00Z")  # 02:30 CET


SHANGHAI = catalog("Asia/Shanghai", {d: [("09:00", "21:00")] for d in EVERY_DAY if d != "mon"})


def test_shanghai_uses_the_local_date_and_weekday():
    # 2026-05-31 is a Sunday; 02:00Z is 10:00 in Shanghai.
    assert check(SHANGHAI, "2026-05-31T02:00:00Z") == dt.datetime(2026, 5, 31, 2, tzinfo=dt.UTC)
    assert check(SHANGHAI, "2026-05-31T10:00:00+08:00")
    # 23:30Z on Sunday is 07:30 on Monday in Shanghai, and the store is closed on Mondays.
    assert code_of(SHANGHAI, "2026-05-31T23:30:00Z") == "outside_opening_hours"
    # 12:30Z on Sunday is 20:30 local: a 30-minute exam fits, a 60-minute one does not.
    assert check(SHANGHAI, "2026-05-31T12:30:00Z")
    assert code_of(SHANGHAI, "2026-05-31T12:30:00Z", "long") == "outside_opening_hours"


def test_unknown_and_inactive_exam_types_are_refused():
    retired = ExamTypeDefined(
        code="std", name="std", duration_minutes=30, required_skill="general", active=False
    )
    cat = apply_roster_event(BERLIN, retired)
    assert cat is not None
    for code in ("std", "nope"):
        with pytest.raises(ProblemError) as info:
            exam_type_of(cat, code)
        assert (info.value.status, info.value.code) == (422, "unknown_exam_type")


def test_closed_dates_and_scheduled_hours_changes():
    changes = [
        StoreHoursChanged(
            store_id="s1", opening_hours={"tue": [{"open": "12:00", "close": "20:00"}]},
            effective_from=dt.date(2026, 3, 17), closed_dates=[dt.date(2026, 3, 11)],
        ),
        StoreHoursChanged(
            store_id="s1",
            opening_hours={d: [{"open": "10:00", "close": "18:00"}] for d in EVERY_DAY},
            closed_dates=[dt.date(2026, 3, 11)],  # the full list, every time
        ),
    ]  # fmt: skip
    cat: StoreCatalog | None = BERLIN
    for change in changes:
        cat = apply_roster_event(cat, change)
    assert cat is not None
    assert code_of(cat, "2026-03-10T09:00:00+01:00") == "outside_opening_hours"  # now from 10:00
    assert check(cat, "2026-03-10T10:00:00+01:00")
    assert code_of(cat, "2026-03-11T10:00:00+01:00") == "outside_opening_hours"  # closed day
    assert check(cat, "2026-03-17T12:00:00+01:00")  # Tuesday, new hours from the 17th
    assert code_of(cat, "2026-03-17T10:00:00+01:00") == "outside_opening_hours"
    assert code_of(cat, "2026-03-18T10:00:00+01:00") == "outside_opening_hours"  # Wed: closed


def test_catalog_events_replayed_in_order_converge():
    events = [
        StoreRegistered(
            store_id="s1", name="S", region="eu", timezone="Europe/Berlin",
            opening_hours={"mon": [{"open": "09:00", "close": "17:00"}]},
        ),
        ExamTypeDefined(code="std", name="s", duration_minutes=30, required_skill="general"),
        ExamTypeDefined(code="std", name="s", duration_minutes=45, required_skill="general"),
    ]  # fmt: skip
    once: StoreCatalog | None = None
    for event in events:
        once = apply_roster_event(once, event)
    replayed = once
    for event in events:  # a redelivery of the whole prefix
        replayed = apply_roster_event(replayed, event)
    assert replayed == once
    assert once is not None and once.exam_types["std"].duration_minutes == 45


def test_an_exam_may_run_across_opening_intervals_that_meet_as_the_processor_allows():
    split = catalog(
        "Europe/Berlin", {d: [("09:00", "12:00"), ("12:00", "18:00")] for d in EVERY_DAY}
    )
    assert check(split, "2026-03-10T11:45:00+01:00")  # 11:45-12:15, across the join
    gap = catalog("Europe/Berlin", {d: [("09:00", "12:00"), ("13:00", "18:00")] for d in EVERY_DAY})
    assert code_of(gap, "2026-03-10T11:45:00+01:00") == "outside_opening_hours"
