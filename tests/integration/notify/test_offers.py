"""Waitlist offers through the real broker into the notify worker and out to a real webhook
receiver: the contact comes from WaitlistJoined (the offer events carry only ids), one message
per offer token even if the event comes again, nothing for an entry notify never saw."""

from __future__ import annotations

import asyncio
import datetime as dt

from optisync_common.resources import Resources
from schemas.events.base import Channel
from schemas.events.booking import (
    Customer,
    OfferDeclined,
    OfferExpired,
    OfferTaken,
    SlotOffered,
    WaitlistJoined,
)
from services.notify.adapters.storage import NotifyRepository
from services.notify.adapters.worker import NotifyWorker
from services.notify.settings import NotifySettings
from tests.integration.notify.helpers import (
    MovableClock,
    WebhookReceiver,
    at_local,
    envelope,
    publish_all,
    wait_state,
)

SHANGHAI = "Asia/Shanghai"


def joined(store: str, entry: str, locale: str, now: dt.datetime):
    return envelope(
        WaitlistJoined(
            waitlist_entry_id=entry,
            idempotency_key=f"j-{entry}",
            customer=Customer(customer_ref=f"c-{entry}", name="Ana", chat_id="wx-9", locale=locale),
            channel=Channel.WECHAT,
            exam_type="standard",
            date_from=now.date(),
            date_to=now.date() + dt.timedelta(days=7),
        ),
        store,
        now,
    )


def offered(store: str, entry: str, token: str, slot: dt.datetime, now: dt.datetime):
    return envelope(
        SlotOffered(
            offer_token=token,
            waitlist_entry_id=entry,
            customer_ref=f"c-{entry}",
            channel=Channel.WECHAT,
            exam_type="standard",
            optometrist_id="o1",
            slot_start=slot,
            local_start=slot.astimezone(dt.timezone(dt.timedelta(hours=8))).isoformat(),
            hold_until=now + dt.timedelta(minutes=15),
        ),
        store,
        now,
    )


async def test_offer_taken_and_expired_reach_the_waitlisted_customer_once(
    notify_settings: NotifySettings,
    worker: NotifyWorker,
    resources: Resources,
    receiver: WebhookReceiver,
    repo: NotifyRepository,
    store: str,
    clock: MovableClock,
):
    now = clock.now()
    slot = at_local(now.date() + dt.timedelta(days=2), "15:30", SHANGHAI)
    zh, en = f"{store}-wl-zh", f"{store}-wl-en"
    await publish_all(
        resources.publisher,
        [
            joined(store, zh, "zh-CN", now),
            joined(store, en, "en", now),
            offered(store, zh, f"{zh}-t", slot, now),
            offered(store, en, f"{en}-t", slot, now),
            offered(store, zh, f"{zh}-t", slot, now),  # the same offer again (new event id)
            envelope(
                OfferDeclined(offer_token=f"{zh}-t", waitlist_entry_id=zh), store, now
            ),  # nothing to say: the customer declined
            envelope(
                OfferTaken(offer_token=f"{en}-t", waitlist_entry_id=en, booking_id="b-x"),
                store,
                now,
            ),
            envelope(
                OfferExpired(offer_token=f"{zh}-t2", waitlist_entry_id=zh, slot_start=slot),
                store,
                now,
            ),
            offered(store, f"{store}-unknown", f"{store}-t9", slot, now),  # never joined
        ],
    )
    got = await receiver.wait_for(store, 4)
    await asyncio.sleep(0.5)  # nothing more follows
    got = receiver.for_store(store)
    by_recipient = {
        who: [r.body for r in got if r.body["recipient"]["customer_ref"] == f"c-{who}"]
        for who in (zh, en)
    }
    assert [m["kind"] for m in by_recipient[zh]] == ["waitlist_offer", "offer_expired"]
    assert [m["kind"] for m in by_recipient[en]] == ["waitlist_offer", "offer_taken"]
    assert len(got) == 4
    day = slot.astimezone(dt.timezone(dt.timedelta(hours=8))).date()
    zh_offer = by_recipient[zh][0]
    assert zh_offer["locale"] == "zh-CN" and zh_offer["recipient"]["chat_id"] == "wx-9"
    assert f"静安店的标准验光有空位了：{day.year}年{day.month}月{day.day}日" in zh_offer["text"]
    assert zh_offer["text"].endswith(f"{notify_settings.public_booking_url}/offers/{zh}-t")
    en_taken = by_recipient[en][1]["text"]
    # the time of the taken slot is what notify kept of the offer
    assert (
        f"sorry: someone else booked the 标准验光 slot at 静安店 on {day:%a} {day.day}" in en_taken
    )
    assert "15:30" in en_taken
    for r in got:
        await wait_state(repo, r.notification_id, "sent")
        assert r.idempotency_key == r.notification_id
