"""The optometrist's day view: shifts minus breaks/training/leave, bookings and gaps."""

from datetime import UTC, date, datetime, time

from services.roster.domain.dayview import BookingSlot, day_schedule
from services.roster.domain.model import Leave, Shift, TimeRange, Training
from services.roster.domain.rules import PlacedShift

DAY = date(2026, 3, 29)  # the spring-forward Sunday in Berlin
TZ = "Europe/Berlin"


def placed() -> PlacedShift:
    lunch = (TimeRange(time(12), time(13)),)
    return PlacedShift(Shift("s1", "o1", "b1", DAY, TimeRange(time(9), time(17)), lunch), TZ)


def booking(booking_id: str, start_h: int, end_h: int, status: str = "confirmed") -> BookingSlot:
    # given in UTC: 07:00 UTC is 09:00 local on this (CEST) day
    return BookingSlot(
        booking_id, "b1", "standard", datetime(2026, 3, 29, start_h, tzinfo=UTC),
        datetime(2026, 3, 29, end_h, tzinfo=UTC), status, TZ,
    )  # fmt: skip


def test_gaps_are_working_time_minus_bookings_in_local_time() -> None:
    bookings = [booking("b1", 7, 8), booking("b2", 13, 14), booking("gone", 8, 9, "cancelled")]
    view = day_schedule("o1", DAY, [placed()], [], [], bookings)
    shift = view["shifts"][0]
    assert shift["start"] == "2026-03-29T09:00:00+02:00"
    assert shift["end"] == "2026-03-29T17:00:00+02:00"
    assert [(w["start"][11:16], w["end"][11:16]) for w in shift["working"]] == [
        ("09:00", "12:00"), ("13:00", "17:00"),
    ]  # fmt: skip
    assert [b["booking_id"] for b in view["bookings"]] == ["b1", "b2"]
    assert view["bookings"][1]["start"] == "2026-03-29T15:00:00+02:00"
    assert [(g["start"][11:16], g["end"][11:16], g["minutes"]) for g in view["gaps"]] == [
        ("10:00", "12:00", 120), ("13:00", "15:00", 120), ("16:00", "17:00", 60),
    ]  # fmt: skip
    assert view["gaps"][0]["start_utc"] == "2026-03-29T08:00:00+00:00"


def test_training_is_cut_out_and_leave_empties_the_day() -> None:
    training = [Training("t1", "o1", DAY, TimeRange(time(14), time(15)), TZ)]
    view = day_schedule("o1", DAY, [placed()], [], training, [])
    assert [(g["start"][11:16], g["end"][11:16]) for g in view["gaps"]] == [
        ("09:00", "12:00"), ("13:00", "14:00"), ("15:00", "17:00"),
    ]  # fmt: skip
    assert view["training"][0]["start"] == "2026-03-29T14:00:00+02:00"
    sick = [Leave("l1", "o1", DAY, DAY, "sick")]
    view = day_schedule("o1", DAY, [placed()], sick, training, [booking("b1", 7, 8)])
    assert view["on_leave"] == {"leave_id": "l1", "kind": "sick"}
    assert view["shifts"][0]["working"] == []
    assert view["gaps"] == []
    assert [b["booking_id"] for b in view["bookings"]] == ["b1"]  # still shown until re-homed
