"""What the console's live feed sends for booking events, and the fan-out by store."""

from __future__ import annotations

import asyncio
import datetime as dt

import orjson

from schemas.envelope import new_envelope
from schemas.events.base import Channel, RejectionReason
from schemas.events.booking import (
    BookingConfirmed,
    BookingRejected,
    BookingRescheduled,
    Customer,
)
from schemas.events.messages import MessageRouted, StaffRole
from services.booking.adapters.live import LiveHub, message_for, sse_frame

START = dt.datetime(2031, 3, 3, 9, 0, tzinfo=dt.UTC)


def _envelope(payload):
    return new_envelope(payload, region="eu", store_id="s1", correlation_id="c", occurred_at=START)


def test_a_confirmation_becomes_the_booking_as_the_api_shows_it() -> None:
    confirmed = BookingConfirmed(
        booking_id="b1", idempotency_key="k", channel=Channel.WECHAT, exam_type="standard",
        customer=Customer(customer_ref="c1", name="Li Lei", locale="zh-CN"),
        optometrist_id="ann", slot_start=START, slot_end=START + dt.timedelta(minutes=30),
        local_start="2031-03-03T10:00:00+01:00", timezone="Europe/Berlin",
    )  # fmt: skip
    message = message_for(_envelope(confirmed))
    assert message is not None and message["kind"] == "booking"
    booking = message["booking"]
    assert (booking["booking_id"], booking["status"], booking["channel"]) == (
        "b1",
        "confirmed",
        "wechat",
    )
    assert booking["local_start"] == "2031-03-03T10:00:00+01:00"
    assert booking["customer"]["name"] == "Li Lei"


def test_a_change_carries_what_changed_and_a_refusal_nothing() -> None:
    moved = BookingRescheduled(
        booking_id="b1", idempotency_key="k2", customer_ref="c1", exam_type="standard",
        old_slot_start=START, old_optometrist_id="ann", old_local_start="x",
        new_slot_start=START + dt.timedelta(hours=1),
        new_slot_end=START + dt.timedelta(hours=1, minutes=30),
        new_optometrist_id="bob", new_local_start="2031-03-03T11:00:00+01:00",
    )  # fmt: skip
    message = message_for(_envelope(moved))
    assert message is not None and message["kind"] == "change"
    assert message["set"]["optometrist_id"] == "bob"
    assert message["set"]["slot_start"].startswith("2031-03-03T10:00:00")
    rejected = BookingRejected(
        booking_id="b2", idempotency_key="k3", reason=RejectionReason.SLOT_TAKEN
    )
    assert message_for(_envelope(rejected)) is None


async def test_the_hub_fans_out_by_store_and_a_slow_console_is_told_to_reload() -> None:
    hub = LiveHub()
    routed = MessageRouted(
        conversation_id="conv", message_id="m", channel=Channel.LINE, customer_ref="c",
        store_id="s1", locale="en", text="price?", role=StaffRole.FRONT_DESK,
    )  # fmt: skip
    with hub.subscribe("s1") as mine, hub.subscribe("s2") as other:
        assert hub.has_subscribers("s1") and hub.subscriber_count() == 2
        message = message_for(_envelope(routed))
        assert message is not None
        hub.publish("s1", message)
        got = await asyncio.wait_for(mine.get(), 1)
        assert got["message"]["text"] == "price?" and other.empty()
        for _ in range(1000):  # more than the queue holds
            hub.publish("s1", {"kind": "event"})
        assert mine.qsize() <= 500
        kinds = [mine.get_nowait()["kind"] for _ in range(mine.qsize())]
        assert "resync" in kinds
    assert not hub.has_subscribers("s1")
    frame = sse_frame({"kind": "change", "booking_id": "b1"})
    assert frame.startswith(b"event: change\ndata: ") and frame.endswith(b"\n\n")
    assert orjson.loads(frame.split(b"data: ")[1])["booking_id"] == "b1"
