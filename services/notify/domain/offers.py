"""Waitlist events -> the notifications they cause (pure: no I/O, time passed in).

The offer events carry only ids (`waitlist_entry_id`, `customer_ref`); who to tell, on which
channel and in which language is what notify kept of the entry's `WaitlistJoined`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from schemas.envelope import Envelope
from schemas.events.base import Channel, EventPayload
from schemas.events.booking import OfferExpired, OfferTaken, SlotOffered, WaitlistJoined
from schemas.events.notify import NotificationKind
from services.notify.domain.model import Notification, Recipient, StoreProfile, notification_id
from services.notify.domain.templates import render, resolve_locale

OFFER_EVENTS = (SlotOffered, OfferTaken, OfferExpired)


@dataclass(frozen=True)
class WaitlistContact:
    """What notify remembers of a waitlist entry (from WaitlistJoined)."""

    entry_id: str
    store_id: str
    recipient: Recipient
    channel: Channel
    exam_type: str


def contact_from_joined(envelope: Envelope[EventPayload], event: WaitlistJoined) -> WaitlistContact:
    customer = event.customer
    return WaitlistContact(
        entry_id=event.waitlist_entry_id,
        store_id=envelope.store_id,
        recipient=Recipient(
            customer_ref=customer.customer_ref,
            name=customer.name,
            phone=customer.phone,
            chat_id=customer.chat_id,
            locale=customer.locale,
        ),
        channel=event.channel,
        exam_type=event.exam_type,
    )


def offer_notification_id(offer_token: str, kind: NotificationKind, customer_ref: str) -> str:
    """One message per offer and kind: keyed by the offer token, not the event id, so a
    re-emitted event (a stream task redoing its transaction) yields the same id. OfferTaken
    finds the offer's time in the offer's notification by this id."""
    return notification_id(f"offer:{offer_token}", str(kind), customer_ref)


def offer_link(public_booking_url: str, offer_token: str) -> str:
    return f"{public_booking_url.rstrip('/')}/offers/{offer_token}"


def _zone(store: StoreProfile | None, local_start: str | None) -> str | dt.tzinfo:
    """The store's zone; without a profile, the offset the event's local time was written in."""
    if store is not None:
        return store.timezone
    if local_start:
        try:
            parsed = dt.datetime.fromisoformat(local_start)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed.tzinfo
    return "UTC"


def plan_offer(
    envelope: Envelope[EventPayload],
    contact: WaitlistContact,
    store: StoreProfile | None,
    *,
    now: dt.datetime,
    max_event_age: dt.timedelta,
    public_booking_url: str,
    offered_slot: dt.datetime | None = None,
) -> Notification | None:
    """The one message an offer event causes for the entry's customer (None: nothing to say).
    `offered_slot`: for OfferTaken, the time of the offer (from its notification), if known."""
    event = envelope.payload
    locale = resolve_locale(contact.recipient.locale, store.locale if store else None)
    store_name = (store.name if store else "") or contact.store_id
    exam_names = store.exam_names if store else {}
    stale_after = envelope.occurred_at + max_event_age
    when: dt.datetime | None = None
    alternatives: Sequence[dt.datetime] = ()
    hold_until: dt.datetime | None = None
    link = ""
    local_start: str | None = None
    exam_type = contact.exam_type
    if isinstance(event, SlotOffered):
        kind, template = NotificationKind.WAITLIST_OFFER, "waitlist_offer"
        when, hold_until, local_start = event.slot_start, event.hold_until, event.local_start
        exam_type = event.exam_type
        link = offer_link(public_booking_url, event.offer_token)
        # an offer read after its hold is over is no offer: recorded as skipped
        stale_after = min(stale_after, event.hold_until)
    elif isinstance(event, OfferTaken):
        kind, template = NotificationKind.OFFER_TAKEN, "offer_taken"
        when = offered_slot
        # `alternatives` arrives with OfferTaken 1.1
        alternatives = list(getattr(event, "alternatives", None) or ())
    elif isinstance(event, OfferExpired):
        kind, template = NotificationKind.OFFER_EXPIRED, "offer_expired"
        when = event.slot_start
    else:
        return None
    subject, text = render(
        template,
        locale,
        contact.channel,
        name=contact.recipient.name,
        store=store_name,
        exam=exam_names.get(exam_type, exam_type),
        timezone=_zone(store, local_start),
        when=when,
        alternatives=alternatives,
        hold_until=hold_until,
        link=link,
    )
    return Notification(
        notification_id=offer_notification_id(
            event.offer_token, kind, contact.recipient.customer_ref
        ),
        kind=kind,
        template=template,
        store_id=contact.store_id,
        booking_id=None,
        recipient=contact.recipient,
        channel=contact.channel,
        locale=locale,
        subject=subject,
        text=text,
        source_event_id=str(envelope.event_id),
        due_at=now,
        stale_after=stale_after,
        slot_start=when,
    )
