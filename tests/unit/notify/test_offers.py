"""Waitlist offer events -> notifications: who (the entry's contact), what (offer with link and
hold time, taken with alternatives, expired), locale, store-local time, channel format, ids."""

from __future__ import annotations

import datetime as dt

from schemas.envelope import new_envelope
from schemas.events.base import Channel, EventPayload
from schemas.events.booking import (
    Customer,
    OfferExpired,
    OfferTaken,
    SlotOffered,
    WaitlistJoined,
)
from schemas.events.notify import NotificationKind
from services.notify.domain.model import StoreProfile
from services.notify.domain.offers import (
    WaitlistContact,
    contact_from_joined,
    offer_link,
    plan_offer,
)
from services.notify.domain.templates import CHANNEL_LIMITS

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
SLOT = dt.datetime(2026, 3, 5, 7, 30, tzinfo=UTC)  # 15:30 in Shanghai
HOLD = dt.datetime(2026, 3, 1, 2, 15, tzinfo=UTC)  # 10:15 in Shanghai, another day
STORE = StoreProfile(
    "s1", timezone="Asia/Shanghai", locale="zh-CN", name="静安店", exam_names={"std": "标准验光"}
)
URL = "https://book.example.cn/"
AGE = dt.timedelta(hours=1)


def env(payload: EventPayload, occurred_at: dt.datetime = NOW):
    return new_envelope(
        payload, region="cn", store_id="s1", correlation_id="c", occurred_at=occurred_at
    )


def contact(locale: str = "zh-CN", channel: Channel = Channel.WECHAT) -> WaitlistContact:
    joined = WaitlistJoined(
        waitlist_entry_id="wl1",
        idempotency_key="k",
        customer=Customer(customer_ref="c1", name="王芳", chat_id="wx1", locale=locale),
        channel=channel,
        exam_type="std",
        date_from=dt.date(2026, 3, 2),
        date_to=dt.date(2026, 3, 9),
    )
    return contact_from_joined(env(joined), joined)


def offered(token: str = "tok-1", hold: dt.datetime = HOLD):
    return env(
        SlotOffered(
            offer_token=token,
            waitlist_entry_id="wl1",
            customer_ref="c1",
            channel=Channel.WECHAT,
            exam_type="std",
            optometrist_id="o1",
            slot_start=SLOT,
            local_start="2026-03-05T15:30:00+08:00",
            hold_until=hold,
        )
    )


def plan(event, who=None, store=STORE, offered_slot=None, now=NOW):
    return plan_offer(
        event,
        who or contact(),
        store,
        now=now,
        max_event_age=AGE,
        public_booking_url=URL,
        offered_slot=offered_slot,
    )


def test_offer_in_zh_with_store_local_times_and_accept_link():
    n = plan(offered())
    assert n is not None and n.kind == NotificationKind.WAITLIST_OFFER
    assert n.recipient.chat_id == "wx1" and n.channel == Channel.WECHAT and n.booking_id is None
    assert n.text == (
        "王芳您好，静安店的标准验光有空位了：2026年3月5日（周四）15:30，"
        "为您保留至2026年3月1日（周日）10:15。确认预约：https://book.example.cn/offers/tok-1"
    )
    assert n.subject == "候补空位通知"
    # an offer read after its hold is no offer: stale then
    assert n.stale_after == HOLD and n.due_at == NOW


def test_offer_in_english_hold_on_the_same_day_shows_only_the_time():
    hold = SLOT - dt.timedelta(hours=2)  # 13:30 on the day of the slot
    n = plan(offered(hold=hold), contact("en"))
    assert n is not None and n.locale == "en"
    assert n.text == (
        "Hi 王芳, a 标准验光 slot freed up at 静安店: Thu 5 Mar 2026, 15:30. We hold it for you "
        "until 13:30. Accept: https://book.example.cn/offers/tok-1"
    )


def test_offer_by_sms_is_short_and_keeps_the_link_whole():
    long_store = StoreProfile("s1", timezone="Asia/Shanghai", locale="en", name="X" * 400)
    n = plan(offered(), contact("en", Channel.PHONE), store=long_store)
    assert n is not None
    assert len(n.text) <= CHANNEL_LIMITS[Channel.PHONE]
    assert n.text.endswith(" " + offer_link(URL, "tok-1")) and "…" in n.text
    short = plan(offered(), contact("en", Channel.PHONE))
    assert short is not None
    assert short.text == (
        "静安店: 标准验光 Thu 5 Mar 2026, 15:30, held until Sun 1 Mar 2026, 10:15. "
        "Accept: https://book.example.cn/offers/tok-1"
    )


def test_without_a_store_profile_times_follow_the_events_local_offset():
    n = plan(offered(), contact("en"), store=None)
    assert n is not None and "Thu 5 Mar 2026, 15:30" in n.text and "at s1:" in n.text


def test_taken_says_sorry_with_the_known_time_and_alternatives():
    taken = OfferTaken(offer_token="tok-1", waitlist_entry_id="wl1", booking_id="b-other")
    n = plan(env(taken), contact("en"), offered_slot=SLOT)
    assert n is not None and n.kind == NotificationKind.OFFER_TAKEN
    assert n.text == (
        "Hi 王芳, sorry: someone else booked the 标准验光 slot at 静安店 on Thu 5 Mar 2026, 15:30 "
        "first. You stay on the waitlist."
    )
    # OfferTaken 1.1 carries nearby free starts
    alternatives = [SLOT + dt.timedelta(hours=1), SLOT + dt.timedelta(days=1)]
    with_alternatives = env(taken.model_copy(update={"alternatives": alternatives}))
    zh = plan(with_alternatives, offered_slot=SLOT)
    assert zh is not None
    assert zh.text == (
        "王芳您好，很抱歉，静安店2026年3月5日（周四）15:30的标准验光空位已被其他顾客预约。"
        "其他可选时间：2026年3月5日（周四）16:30、2026年3月6日（周五）15:30。"
    )
    # notify never saw the offer: no time, still the apology
    unknown = plan(env(taken), contact("en"))
    assert unknown is not None and "slot at 静安店 first." in unknown.text


def test_expired_is_a_short_note():
    expired = OfferExpired(offer_token="tok-1", waitlist_entry_id="wl1", slot_start=SLOT)
    n = plan(env(expired), contact("en"))
    assert n is not None and n.kind == NotificationKind.OFFER_EXPIRED
    assert n.text == (
        "Hi 王芳, the 标准验光 slot at 静安店 on Thu 5 Mar 2026, 15:30 we held for you has been "
        "released. You stay on the waitlist."
    )


def test_ids_are_per_offer_and_kind_whatever_the_event_id():
    first, again = plan(offered()), plan(offered())  # two envelopes, two event ids
    assert first is not None and again is not None
    assert first.notification_id == again.notification_id
    other = plan(offered(token="tok-2"))
    expired = plan(env(OfferExpired(offer_token="tok-1", waitlist_entry_id="wl1", slot_start=SLOT)))
    assert other is not None and expired is not None
    assert len({first.notification_id, other.notification_id, expired.notification_id}) == 3
