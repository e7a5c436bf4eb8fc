"""Booking events -> the notifications they cause (pure: no I/O, time passed in)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace

from schemas.envelope import Envelope
from schemas.events.base import Actor, EventPayload
from schemas.events.booking import (
    BookingCancelled,
    BookingCompleted,
    BookingConfirmed,
    BookingDisplaced,
    BookingReassigned,
    BookingRescheduled,
    ExamResultPosted,
)
from schemas.events.notify import NotificationKind
from services.notify.domain import reminders
from services.notify.domain.model import (
    BookingContext,
    Notification,
    Plan,
    Recipient,
    StoreProfile,
    notification_id,
)
from services.notify.domain.templates import render, resolve_locale


@dataclass(frozen=True)
class Policy:
    reminder_offsets_min: tuple[int, ...] = (1440, 120)
    reminder_min_notice: dt.timedelta = dt.timedelta(minutes=30)
    feedback_delay: dt.timedelta = dt.timedelta(hours=1)
    # Messages about events older than this are not sent (replays, long outages).
    max_event_age: dt.timedelta = dt.timedelta(hours=1)


@dataclass(frozen=True)
class _Message:
    kind: NotificationKind
    template: str
    id_kind: str
    when: dt.datetime | None = None
    old_when: dt.datetime | None = None
    alternatives: Sequence[dt.datetime] = ()
    summary: str = ""
    due_at: dt.datetime | None = None
    stale_after: dt.datetime | None = None


def _make(
    envelope: Envelope[EventPayload],
    ctx: BookingContext,
    store: StoreProfile,
    message: _Message,
    now: dt.datetime,
    policy: Policy,
) -> Notification:
    locale = resolve_locale(ctx.recipient.locale, store.locale)
    subject, text = render(
        message.template,
        locale,
        ctx.channel,
        name=ctx.recipient.name,
        store=store.name or ctx.store_id,
        exam=store.exam_names.get(ctx.exam_type, ctx.exam_type),
        timezone=ctx.timezone,
        when=message.when,
        old_when=message.old_when,
        alternatives=message.alternatives,
        summary=message.summary,
    )
    return Notification(
        notification_id=notification_id(
            str(envelope.event_id), message.id_kind, ctx.recipient.customer_ref
        ),
        kind=message.kind,
        template=message.template,
        store_id=ctx.store_id,
        booking_id=ctx.booking_id,
        recipient=ctx.recipient,
        channel=ctx.channel,
        locale=locale,
        subject=subject,
        text=text,
        source_event_id=str(envelope.event_id),
        due_at=message.due_at or now,
        stale_after=message.stale_after
        or envelope.occurred_at + ((message.due_at or now) - now) + policy.max_event_age,
        slot_start=message.when,
    )


def _reminders(
    ctx: BookingContext, store: StoreProfile, policy: Policy, now: dt.datetime
) -> list[_Message]:
    offsets = store.reminder_offsets_min or policy.reminder_offsets_min
    return [
        _Message(
            NotificationKind.REMINDER,
            "reminder",
            f"reminder:{offset}",
            when=ctx.slot_start,
            due_at=due,
            stale_after=stale_after,
        )
        for offset, due, stale_after in reminders.schedule(
            ctx.slot_start, offsets, ctx.timezone, now=now, min_notice=policy.reminder_min_notice
        )
    ]


def context_from_confirmation(
    envelope: Envelope[EventPayload], event: BookingConfirmed
) -> BookingContext:
    customer = event.customer
    return BookingContext(
        booking_id=event.booking_id,
        store_id=envelope.store_id,
        recipient=Recipient(
            customer_ref=customer.customer_ref,
            name=customer.name,
            phone=customer.phone,
            chat_id=customer.chat_id,
            locale=customer.locale,
        ),
        channel=event.channel,
        timezone=event.timezone,
        exam_type=event.exam_type,
        slot_start=event.slot_start,
        optometrist_id=event.optometrist_id,
    )


def booking_id_of(payload: EventPayload) -> str | None:
    value = getattr(payload, "booking_id", None)
    return value if isinstance(value, str) else None


def plan(
    envelope: Envelope[EventPayload],
    ctx: BookingContext | None,
    store: StoreProfile | None,
    policy: Policy,
    now: dt.datetime,
) -> Plan:
    """The notifications (and reminder bookkeeping) one booking event causes.

    `ctx` is what notify remembered of the booking (None if it never saw the confirmation);
    `store` its store profile (None: a profile is derived from the booking's time zone).
    """
    event = envelope.payload
    if isinstance(event, BookingConfirmed):
        ctx = context_from_confirmation(envelope, event)
    if ctx is None:
        return Plan(missing_context=booking_id_of(event) is not None)
    store = store or StoreProfile(store_id=ctx.store_id, timezone=ctx.timezone)
    messages: list[_Message] = []
    result = Plan(context=ctx)
    if isinstance(event, BookingConfirmed):
        messages.append(
            _Message(
                NotificationKind.CONFIRMATION, "confirmation", "confirmation", when=event.slot_start
            )
        )
        messages += _reminders(ctx, store, policy, now)
        result.keep_reminders_for = ctx.slot_start
    elif isinstance(event, BookingRescheduled):
        ctx = replace(ctx, slot_start=event.new_slot_start, optometrist_id=event.new_optometrist_id)
        messages.append(
            _Message(
                NotificationKind.CHANGE,
                "change",
                "change",
                when=event.new_slot_start,
                old_when=event.old_slot_start,
            )
        )
        messages += _reminders(ctx, store, policy, now)
        result.drop_reminders = True
        result.keep_reminders_for = event.new_slot_start
    elif isinstance(event, BookingCancelled):
        ctx = replace(ctx, status="cancelled")
        template = (
            "cancellation.by_store" if event.by == Actor.STORE else "cancellation.by_customer"
        )
        messages.append(
            _Message(NotificationKind.CANCELLATION, template, "cancellation", when=event.slot_start)
        )
        result.drop_reminders = True
    elif isinstance(event, BookingReassigned):
        ctx = replace(ctx, optometrist_id=event.to_optometrist_id)
        messages.append(
            _Message(
                NotificationKind.REASSIGNMENT, "reassignment", "reassignment", when=event.slot_start
            )
        )
    elif isinstance(event, BookingDisplaced):
        ctx = replace(ctx, status="displaced")
        messages.append(
            _Message(
                NotificationKind.DISPLACEMENT,
                "displacement",
                "displacement",
                when=event.slot_start,
                alternatives=event.alternatives,
            )
        )
        result.drop_reminders = True
    elif isinstance(event, ExamResultPosted):
        messages.append(
            _Message(
                NotificationKind.EXAM_RESULT, "exam_result", "exam_result", summary=event.summary
            )
        )
    elif isinstance(event, BookingCompleted):
        ctx = replace(ctx, status="completed")
        messages.append(
            _Message(
                NotificationKind.FEEDBACK_REQUEST,
                "feedback_request",
                "feedback_request",
                due_at=now + policy.feedback_delay,
            )
        )
        result.drop_reminders = True
        result.awaits_rating = True
    result.context = ctx
    result.notifications = [_make(envelope, ctx, store, m, now, policy) for m in messages]
    return result
