"""The .ics invites and feeds, parsed back with a real calendar library (icalendar)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import icalendar

from services.booking.web import ics

BERLIN = ZoneInfo("Europe/Berlin")


def _doc(start_local: dt.datetime, minutes: int = 30, **extra: Any) -> dict[str, Any]:
    start = start_local.astimezone(dt.UTC)
    return {
        "_id": "b-42",
        "store_id": "berlin-1",
        "status": "confirmed",
        "slot_start": start,
        "slot_end": start + dt.timedelta(minutes=minutes),
        "updated_at": start - dt.timedelta(days=3),
        "history": [{"event": "confirmed"}],
        **extra,
    }


def _parse(text: str) -> icalendar.Calendar:
    return icalendar.Calendar.from_ical(text)


def _local(component: Any, name: str) -> dt.datetime:
    return component.decoded(name).astimezone(BERLIN)


def test_invites_carry_the_promised_wall_time_on_both_sides_of_a_dst_change() -> None:
    # Europe/Berlin springs forward on 2031-03-30: 10:00 is UTC+1 before, UTC+2 after.
    for day, offset in ((dt.date(2031, 3, 29), 1), (dt.date(2031, 3, 31), 2)):
        start = dt.datetime.combine(day, dt.time(10, 0), tzinfo=BERLIN)
        text = ics.invite(ics.booking_event(_doc(start), summary="Eye exam"), organizer="Store")
        (event,) = _parse(text).walk("VEVENT")
        assert _local(event, "DTSTART") == start
        assert _local(event, "DTSTART").utcoffset() == dt.timedelta(hours=offset)
        assert (_local(event, "DTSTART").hour, _local(event, "DTEND").hour) == (10, 10)
        assert _local(event, "DTEND").minute == 30


def test_an_exam_across_the_autumn_change_keeps_its_real_duration() -> None:
    # 2031-10-26 02:30 happens twice in Berlin; a 60-minute exam from 01:30 (first pass)
    # ends at 02:30 on the second pass: one absolute hour.
    start = dt.datetime(2031, 10, 26, 1, 30, tzinfo=BERLIN)
    text = ics.invite(ics.booking_event(_doc(start, minutes=60), summary="x"), organizer="S")
    (event,) = _parse(text).walk("VEVENT")
    assert event.decoded("DTEND") - event.decoded("DTSTART") == dt.timedelta(hours=1)


def test_changes_bump_the_sequence_and_a_cancel_keeps_the_uid() -> None:
    start = dt.datetime(2031, 3, 31, 10, 0, tzinfo=BERLIN)
    first = _parse(ics.invite(ics.booking_event(_doc(start), summary="x"), organizer="S"))
    moved_doc = _doc(
        start + dt.timedelta(hours=2),
        history=[{"event": "confirmed"}, {"event": "checked_in"}, {"event": "rescheduled"}],
    )
    moved = _parse(ics.invite(ics.booking_event(moved_doc, summary="x"), organizer="S"))
    cancelled_doc = {
        **moved_doc,
        "status": "cancelled",
        "history": [*moved_doc["history"], {"event": "cancelled"}],
    }
    cancelled = _parse(ics.invite(ics.booking_event(cancelled_doc, summary="x"), organizer="S"))
    events = [cal.walk("VEVENT")[0] for cal in (first, moved, cancelled)]
    assert len({str(e["UID"]) for e in events}) == 1
    assert [e.decoded("SEQUENCE") for e in events] == [0, 1, 2]
    assert [str(cal["METHOD"]) for cal in (first, moved, cancelled)] == [
        "PUBLISH",
        "PUBLISH",
        "CANCEL",
    ]
    assert str(events[2]["STATUS"]) == "CANCELLED"
    assert _local(events[1], "DTSTART").hour == 12


def test_text_is_escaped_and_long_lines_are_folded_without_breaking_characters() -> None:
    start = dt.datetime(2031, 3, 31, 10, 0, tzinfo=BERLIN)
    summary = "视光检查; 散瞳, 请勿驾车\\ " + "眼" * 60
    text = ics.invite(
        ics.booking_event(_doc(start), summary=summary, description="line 1\nline 2"),
        organizer='Store "Mitte"',
    )
    assert all(len(line.encode()) <= 75 for line in text.split("\r\n"))
    (event,) = _parse(text).walk("VEVENT")
    assert str(event["SUMMARY"]) == summary
    assert str(event["DESCRIPTION"]) == "line 1\nline 2"


def test_a_feed_lists_many_bookings_with_their_own_uids() -> None:
    start = dt.datetime(2031, 3, 31, 9, 0, tzinfo=BERLIN)
    docs = [{**_doc(start + dt.timedelta(minutes=30 * i)), "_id": f"b-{i}"} for i in range(3)]
    docs[1]["status"] = "cancelled"
    text = ics.render_calendar(
        [ics.booking_event(d, summary=f"exam {d['_id']}") for d in docs],
        method="PUBLISH",
        organizer="OptiSync",
        name="Dr Li",
    )
    cal = _parse(text)
    events = cal.walk("VEVENT")
    assert [str(e["UID"]) for e in events] == [f"b-{i}@optisync" for i in range(3)]
    assert [str(e["STATUS"]) for e in events] == ["CONFIRMED", "CANCELLED", "CONFIRMED"]
    assert str(cal["X-WR-CALNAME"]) == "Dr Li"
