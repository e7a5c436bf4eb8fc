"""Pure projection logic: booking documents from events, availability rendering, cursors."""

from __future__ import annotations

import base64
import datetime as dt

import orjson
import pytest

from schemas.envelope import new_envelope
from schemas.events.availability import ExamTypeSlots, StoreDayAvailability
from schemas.events.base import RejectionReason
from schemas.events.booking import (
    BookingCancelled,
    BookingConfirmed,
    BookingRescheduled,
    Customer,
)
from services.booking.adapters.bookings import (
    InvalidCursor,
    apply_change,
    confirmed_doc,
    decode_cursor,
    encode_cursor,
)
from services.booking.api.presenters import (
    booking_from_doc,
    rejection_outcome,
    render_availability,
)

T0 = dt.datetime(2026, 3, 28, 8, 0, tzinfo=dt.UTC)  # 09:00 in Berlin (CET)
BEFORE = dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp()  # before any rendered day


def env(payload, minutes: int = 0):
    return new_envelope(
        payload, region="eu", store_id="s1", correlation_id="c1",
        occurred_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=minutes),
    )  # fmt: skip


CONFIRMED = env(
    BookingConfirmed(
        booking_id="b1", idempotency_key="k1", channel="wechat", exam_type="std",
        customer=Customer(customer_ref="c-1", name="Li", phone="+86 1", locale="zh-CN"),
        optometrist_id="o1", slot_start=T0, slot_end=T0 + dt.timedelta(minutes=30),
        local_start="2026-03-28T09:00:00+01:00", timezone="Europe/Berlin",
    )
)  # fmt: skip
NEW_START = dt.datetime(2026, 3, 29, 7, 0, tzinfo=dt.UTC)  # 09:00 CEST, after the DST change
RESCHEDULED = env(
    BookingRescheduled(
        booking_id="b1", idempotency_key="k2", customer_ref="c-1", exam_type="std",
        old_slot_start=T0, old_optometrist_id="o1", old_local_start="2026-03-28T09:00:00+01:00",
        new_slot_start=NEW_START, new_slot_end=NEW_START + dt.timedelta(minutes=30),
        new_optometrist_id="o2", new_local_start="2026-03-29T09:00:00+02:00",
    ),
    minutes=1,
)  # fmt: skip
CANCELLED = env(
    BookingCancelled(
        booking_id="b1", idempotency_key="k3", customer_ref="c-1", by="customer", late=False,
        minutes_before_start=600, exam_type="std", optometrist_id="o2", slot_start=NEW_START,
        local_start="2026-03-29T09:00:00+02:00",
    ),
    minutes=2,
)  # fmt: skip


def test_booking_lifecycle_and_redelivery():
    doc = confirmed_doc(CONFIRMED)
    for event in (RESCHEDULED, CANCELLED, RESCHEDULED, CANCELLED):  # the last two: redelivered
        doc = apply_change(doc, event)
    assert doc["status"] == "cancelled"
    assert doc["slot_start"] == NEW_START and doc["optometrist_id"] == "o2"
    assert [h["event"] for h in doc["history"]] == ["confirmed", "rescheduled", "cancelled"]
    assert doc["last_event_id"] == str(CANCELLED.event_id)
    assert doc["updated_at"] == CANCELLED.occurred_at and doc["created_at"] == CONFIRMED.occurred_at
    booking = booking_from_doc(doc)
    assert booking.local_start.isoformat() == "2026-03-29T09:00:00+02:00"
    assert booking.model_dump(mode="json")["slot_start"] == "2026-03-29T07:00:00Z"


def test_cursor_round_trip_and_garbage():
    doc = confirmed_doc(CONFIRMED)
    assert decode_cursor(encode_cursor(doc)) == (T0, "b1")
    crafted = [  # well-formed, but at the calendar's ends once in UTC, or without an offset
        base64.urlsafe_b64encode(orjson.dumps([start, "x"])).decode().rstrip("=")
        for start in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-12:00", "2026-03-29")
    ]
    for garbage in ("", "!!!", "bm90IGpzb24", encode_cursor(doc)[:-3], *crafted):
        with pytest.raises(InvalidCursor):
            decode_cursor(garbage)


def test_rejections_map_to_problem_statuses_with_local_alternatives():
    alt = dt.datetime(2026, 3, 29, 7, 15, tzinfo=dt.UTC)
    taken = rejection_outcome(RejectionReason.SLOT_TAKEN, "", "Europe/Berlin", [alt])
    body = orjson.loads(taken.body)
    assert (taken.status, body["code"]) == (409, "slot_taken")
    assert body["alternatives"] == [
        {"start": "2026-03-29T09:15:00+02:00", "start_utc": "2026-03-29T07:15:00Z"}
    ]
    expected = {
        RejectionReason.UNKNOWN_STORE: (404, "unknown_store"),
        RejectionReason.UNKNOWN_BOOKING: (404, "unknown_booking"),
        RejectionReason.INVALID_TRANSITION: (409, "invalid_transition"),
        RejectionReason.HELD: (409, "held"),
        RejectionReason.OUTSIDE_HOURS: (422, "outside_opening_hours"),
        RejectionReason.IN_PAST: (422, "in_past"),
        RejectionReason.NOT_ON_GRID: (422, "not_on_grid"),
        RejectionReason.IDEMPOTENCY_KEY_REUSED: (422, "idempotency_key_reused"),
        RejectionReason.INTERNAL_ERROR: (500, "internal_error"),
    }
    for reason, (status, code) in expected.items():
        outcome = rejection_outcome(reason, "", "Europe/Berlin")
        assert (outcome.status, orjson.loads(outcome.body)["code"]) == (status, code)


def test_availability_rendering_in_store_time():
    view = StoreDayAvailability(
        store_id="s1", local_date=dt.date(2026, 3, 29), timezone="Europe/Berlin", slot_minutes=15,
        exam_types={"std": ExamTypeSlots(
            duration_minutes=30, free_starts=["09:00", "09:15"], free_count=2, capacity=[1, 2]
        )},
        computed_at=T0, seq=4,
    )  # fmt: skip
    raw = orjson.dumps(view.model_dump(mode="json"))
    body = orjson.loads(render_availability(raw, "std", BEFORE) or b"")
    assert body["seq"] == 4 and body["duration_minutes"] == 30
    assert body["slots"] == [
        {"local_time": "09:00", "start": "2026-03-29T09:00:00+02:00",
         "start_utc": "2026-03-29T07:00:00Z", "free_count": 1},
        {"local_time": "09:15", "start": "2026-03-29T09:15:00+02:00",
         "start_utc": "2026-03-29T07:15:00Z", "free_count": 2},
    ]  # fmt: skip
    assert render_availability(raw, "other", BEFORE) is None


def test_availability_on_the_fall_back_night_tells_both_two_thirties_apart():
    # 2026-10-25 in Berlin: 02:00-03:00 happens twice; the view lists starts in time order.
    starts = ["01:30", "02:00", "02:30", "02:00", "02:30", "03:00"]
    view = StoreDayAvailability(
        store_id="s1", local_date=dt.date(2026, 10, 25), timezone="Europe/Berlin",
        slot_minutes=30, computed_at=T0,
        exam_types={"std": ExamTypeSlots(
            duration_minutes=30, free_starts=starts, free_count=len(starts)
        )},
    )  # fmt: skip
    body = orjson.loads(
        render_availability(orjson.dumps(view.model_dump(mode="json")), "std", BEFORE) or b""
    )
    assert [s["start_utc"] for s in body["slots"]] == [
        "2026-10-24T23:30:00Z", "2026-10-25T00:00:00Z", "2026-10-25T00:30:00Z",
        "2026-10-25T01:00:00Z", "2026-10-25T01:30:00Z", "2026-10-25T02:00:00Z",
    ]  # fmt: skip
    assert [s["start"][-6:] for s in body["slots"]] == ["+02:00"] * 3 + ["+01:00"] * 3
    assert {s["free_count"] for s in body["slots"]} == {1}
