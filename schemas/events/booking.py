"""Booking commands (``booking.commands.v1``) and booking events (``booking.events.v1``).

Commands are produced by the booking API (or forwarded from another region) keyed by store id;
the availability processor applies them in order per store and answers with booking events.
Booking events carry customer contact data (PII) and therefore stay in their region.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import ClassVar, Literal, Self

from pydantic import Field, model_validator

from schemas.events.base import (
    Actor,
    Channel,
    EventPayload,
    Id,
    IdempotencyKey,
    Locale,
    LocalTime,
    PayloadModel,
    RejectionReason,
    Timezone,
    UtcDatetime,
    check_local_interval,
)
from schemas.registry import BOOKING_COMMANDS, BOOKING_EVENTS

__all__ = [
    "AcceptOffer",
    "BookingCancelled",
    "BookingCheckedIn",
    "BookingCommand",
    "BookingCompleted",
    "BookingConfirmed",
    "BookingDisplaced",
    "BookingEvent",
    "BookingNoShow",
    "BookingReassigned",
    "BookingRejected",
    "BookingRescheduled",
    "CancelBooking",
    "CheckInBooking",
    "CommandFailed",
    "CompleteBooking",
    "Customer",
    "DeclineOffer",
    "ExamResultPosted",
    "JoinWaitlist",
    "LeaveWaitlist",
    "MarkNoShow",
    "OfferDeclined",
    "OfferExpired",
    "OfferTaken",
    "PostExamResult",
    "RequestBooking",
    "RescheduleBooking",
    "RosterCause",
    "SlotOffered",
    "WaitlistJoined",
    "WaitlistLeft",
]


class Customer(PayloadModel):
    """Who the booking is for. ``customer_ref`` is the stable pseudonymous id; the rest is PII."""

    customer_ref: Id
    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    chat_id: str | None = Field(default=None, max_length=200, description="id on the channel")
    locale: Locale = "en"


class RosterCause(StrEnum):
    """Roster change that moved or displaced a booking."""

    LEAVE = "leave"
    SICK = "sick"
    TRAINING = "training"
    SHIFT_CHANGED = "shift_changed"
    SHIFT_CANCELLED = "shift_cancelled"
    OPTOMETRIST_LEFT = "optometrist_left"
    STORE_HOURS_CHANGED = "store_hours_changed"


class _WaitlistWindow(PayloadModel):
    """Day range and optional time-of-day window (store-local) a waitlist entry accepts."""

    date_from: dt.date
    date_to: dt.date
    time_from: LocalTime | None = None
    time_to: LocalTime | None = None

    @model_validator(mode="after")
    def _check_window(self) -> Self:
        if self.date_to < self.date_from:
            raise ValueError("date_to must not be before date_from")
        if self.time_from is not None and self.time_to is not None:
            check_local_interval(self.time_from, self.time_to, "time window")
        return self


# --------------------------------------------------------------------------------------------
# Commands (booking.commands.v1, also carried on booking.forward.<region>.v1)
# --------------------------------------------------------------------------------------------


class BookingCommand(EventPayload):
    """Common base of commands: every command is idempotent by ``idempotency_key``."""

    topic: ClassVar[str] = BOOKING_COMMANDS

    idempotency_key: IdempotencyKey


class RequestBooking(BookingCommand):
    """Book ``exam_type`` at ``slot_start``; the processor picks an optometrist if none given."""

    event_type: ClassVar[str] = "RequestBooking"

    booking_id: Id
    channel: Channel
    customer: Customer
    exam_type: Id
    slot_start: UtcDatetime
    optometrist_id: Id | None = None
    requested_at: UtcDatetime


class CancelBooking(BookingCommand):
    event_type: ClassVar[str] = "CancelBooking"

    booking_id: Id
    by: Actor
    reason: str | None = Field(default=None, max_length=500)


class RescheduleBooking(BookingCommand):
    event_type: ClassVar[str] = "RescheduleBooking"

    booking_id: Id
    new_slot_start: UtcDatetime
    optometrist_id: Id | None = None


class CheckInBooking(BookingCommand):
    event_type: ClassVar[str] = "CheckInBooking"

    booking_id: Id
    staff_id: Id | None = None


class MarkNoShow(BookingCommand):
    event_type: ClassVar[str] = "MarkNoShow"

    booking_id: Id
    staff_id: Id | None = None


class CompleteBooking(BookingCommand):
    event_type: ClassVar[str] = "CompleteBooking"

    booking_id: Id
    optometrist_id: Id | None = None


class PostExamResult(BookingCommand):
    """The optometrist's short result summary after the exam (sent on to the customer)."""

    event_type: ClassVar[str] = "PostExamResult"

    booking_id: Id
    optometrist_id: Id
    summary: str = Field(min_length=1, max_length=2000)


class JoinWaitlist(BookingCommand, _WaitlistWindow):
    event_type: ClassVar[str] = "JoinWaitlist"
    event_version: ClassVar[str] = "1.1"  # 1.1: priority

    waitlist_entry_id: Id
    channel: Channel
    customer: Customer
    exam_type: Id
    optometrist_id: Id | None = None
    priority: int = Field(default=0, ge=0, le=100, description="higher is offered first")


class LeaveWaitlist(BookingCommand):
    event_type: ClassVar[str] = "LeaveWaitlist"

    waitlist_entry_id: Id
    customer_ref: Id


class AcceptOffer(BookingCommand):
    """Accept a waitlist offer. ``booking_id`` is allocated by the API so it can await the reply."""

    event_type: ClassVar[str] = "AcceptOffer"
    event_version: ClassVar[str] = "1.1"  # 1.1: customer

    offer_token: Id
    customer_ref: Id
    booking_id: Id
    customer: Customer | None = Field(
        default=None, description="contact for the confirmation (the API adds the entry's)"
    )


class DeclineOffer(BookingCommand):
    event_type: ClassVar[str] = "DeclineOffer"

    offer_token: Id
    customer_ref: Id


# --------------------------------------------------------------------------------------------
# Events (booking.events.v1): decisions of the availability processor
# --------------------------------------------------------------------------------------------


class BookingEvent(EventPayload):
    topic: ClassVar[str] = BOOKING_EVENTS


class BookingConfirmed(BookingEvent):
    """A slot is promised. ``local_start`` is the store-local time with offset, for messages."""

    event_type: ClassVar[str] = "BookingConfirmed"
    event_version: ClassVar[str] = "1.1"  # 1.1: offer_token

    booking_id: Id
    idempotency_key: IdempotencyKey
    customer: Customer
    channel: Channel
    exam_type: Id
    optometrist_id: Id
    slot_start: UtcDatetime
    slot_end: UtcDatetime
    local_start: str = Field(examples=["2024-05-01T17:00:00+08:00"])
    timezone: Timezone
    waitlist_entry_id: Id | None = Field(default=None, description="set when filled from an offer")
    offer_token: Id | None = Field(default=None, description="the accepted offer, if any")

    @model_validator(mode="after")
    def _check_slot(self) -> Self:
        if self.slot_end <= self.slot_start:
            raise ValueError("slot_end must be after slot_start")
        return self


class BookingRejected(BookingEvent):
    """The command could not be applied; ``alternatives`` are nearby free slot starts."""

    event_type: ClassVar[str] = "BookingRejected"
    event_version: ClassVar[str] = "1.2"  # 1.1: reasons `idempotency_key_reused`, `internal_error`
    # 1.2: reason `waitlist_full`

    booking_id: Id
    idempotency_key: IdempotencyKey
    reason: RejectionReason
    detail: str = ""
    slot_start: UtcDatetime | None = None
    alternatives: list[UtcDatetime] = Field(default_factory=list, max_length=10)
    existing_booking_id: Id | None = Field(
        default=None, description="for `duplicate`: the booking the request already resolved to"
    )


class BookingCancelled(BookingEvent):
    """``late`` follows the store's cancellation window; minutes may be negative after start."""

    event_type: ClassVar[str] = "BookingCancelled"

    booking_id: Id
    idempotency_key: IdempotencyKey | None = None
    customer_ref: Id
    by: Actor
    reason: str | None = Field(default=None, max_length=500)
    late: bool
    minutes_before_start: int
    exam_type: Id
    optometrist_id: Id
    slot_start: UtcDatetime
    local_start: str


class BookingRescheduled(BookingEvent):
    event_type: ClassVar[str] = "BookingRescheduled"

    booking_id: Id
    idempotency_key: IdempotencyKey
    customer_ref: Id
    exam_type: Id
    old_slot_start: UtcDatetime
    old_optometrist_id: Id
    old_local_start: str
    new_slot_start: UtcDatetime
    new_slot_end: UtcDatetime
    new_optometrist_id: Id
    new_local_start: str


class BookingCheckedIn(BookingEvent):
    event_type: ClassVar[str] = "BookingCheckedIn"

    booking_id: Id
    idempotency_key: IdempotencyKey
    optometrist_id: Id
    staff_id: Id | None = None


class BookingNoShow(BookingEvent):
    event_type: ClassVar[str] = "BookingNoShow"

    booking_id: Id
    idempotency_key: IdempotencyKey
    slot_start: UtcDatetime


class BookingCompleted(BookingEvent):
    event_type: ClassVar[str] = "BookingCompleted"

    booking_id: Id
    idempotency_key: IdempotencyKey
    optometrist_id: Id


class BookingReassigned(BookingEvent):
    """A roster change moved the booking to another optometrist with the skill; time unchanged."""

    event_type: ClassVar[str] = "BookingReassigned"

    booking_id: Id
    customer_ref: Id
    from_optometrist_id: Id
    to_optometrist_id: Id
    cause: RosterCause
    slot_start: UtcDatetime
    local_start: str


class BookingDisplaced(BookingEvent):
    """No optometrist can take the booking any more; the customer must pick a new time."""

    event_type: ClassVar[str] = "BookingDisplaced"

    booking_id: Id
    customer_ref: Id
    cause: RosterCause
    exam_type: Id
    optometrist_id: Id
    slot_start: UtcDatetime
    local_start: str
    alternatives: list[UtcDatetime] = Field(default_factory=list, max_length=3)


class ExamResultPosted(BookingEvent):
    event_type: ClassVar[str] = "ExamResultPosted"

    booking_id: Id
    idempotency_key: IdempotencyKey
    customer_ref: Id
    optometrist_id: Id
    summary: str = Field(min_length=1, max_length=2000)


class WaitlistJoined(BookingEvent, _WaitlistWindow):
    event_type: ClassVar[str] = "WaitlistJoined"
    event_version: ClassVar[str] = "1.1"  # 1.1: priority

    waitlist_entry_id: Id
    idempotency_key: IdempotencyKey
    customer: Customer
    channel: Channel
    exam_type: Id
    optometrist_id: Id | None = None
    priority: int = Field(default=0, ge=0, le=100, description="higher is offered first")


class WaitlistLeft(BookingEvent):
    event_type: ClassVar[str] = "WaitlistLeft"

    waitlist_entry_id: Id
    idempotency_key: IdempotencyKey | None = None
    reason: Literal["customer", "filled", "expired"]


class SlotOffered(BookingEvent):
    """A freed slot is held for a waitlist entry until ``hold_until``; first accept wins."""

    event_type: ClassVar[str] = "SlotOffered"

    offer_token: Id
    waitlist_entry_id: Id
    customer_ref: Id
    channel: Channel
    exam_type: Id
    optometrist_id: Id
    slot_start: UtcDatetime
    local_start: str
    hold_until: UtcDatetime
    rank: int = Field(default=1, ge=1, description="1 = first in the ranked waitlist order")


class OfferTaken(BookingEvent):
    event_type: ClassVar[str] = "OfferTaken"
    event_version: ClassVar[str] = "1.1"  # 1.1: customer_ref, alternatives

    offer_token: Id
    waitlist_entry_id: Id
    booking_id: Id
    customer_ref: Id | None = None
    alternatives: list[UtcDatetime] = Field(
        default_factory=list, max_length=3, description="other free starts near the taken one"
    )


class OfferExpired(BookingEvent):
    event_type: ClassVar[str] = "OfferExpired"
    event_version: ClassVar[str] = "1.1"  # 1.1: customer_ref

    offer_token: Id
    waitlist_entry_id: Id
    slot_start: UtcDatetime
    customer_ref: Id | None = None


class OfferDeclined(BookingEvent):
    event_type: ClassVar[str] = "OfferDeclined"
    event_version: ClassVar[str] = "1.1"  # 1.1: customer_ref, slot_start

    offer_token: Id
    waitlist_entry_id: Id
    customer_ref: Id | None = None
    slot_start: UtcDatetime | None = None


class CommandFailed(BookingEvent):
    """A command that can never succeed (invalid for this store/state) answered without a DLQ."""

    event_type: ClassVar[str] = "CommandFailed"
    # 1.1: reasons `idempotency_key_reused`, `internal_error`; `decided_event_id`
    # 1.2: reason `waitlist_full`; `waitlist_entry_id`
    event_version: ClassVar[str] = "1.2"

    command_type: str
    command_event_id: str | None = None
    idempotency_key: IdempotencyKey | None = None
    booking_id: Id | None = None
    reason: RejectionReason
    detail: str = ""
    decided_event_id: str | None = Field(
        default=None,
        description="with reason `duplicate`: the event of the change this idempotency key "
        "already made (a retry's answer is the booking once it shows that change)",
    )
    waitlist_entry_id: Id | None = Field(
        default=None,
        description="with reason `duplicate` for JoinWaitlist: the entry this idempotency key "
        "already made (a retry's answer is that entry)",
    )
