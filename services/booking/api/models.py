"""HTTP request and response models of the booking API (the OpenAPI schema comes from these).

Times leave as RFC 3339 with an offset: UTC (`...Z`) and the store-local wall time alongside.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.events.base import Actor, Channel, Id, Locale, LocalTime, RequestDay, RequestInstant
from schemas.events.booking import Customer
from services.booking.adapters.bookings import BookingStatus

ChannelMessageId = Annotated[str, Field(min_length=1, max_length=200)]


class RequestModel(BaseModel):
    # A misspelt optional field must not be silently dropped.
    model_config = ConfigDict(extra="forbid")


class BookingRequest(RequestModel):
    store_id: Id
    exam_type: Id
    slot_start: RequestInstant = Field(
        description="RFC 3339 with offset; must lie on the store's slot grid",
        examples=["2026-03-30T09:30:00+02:00"],
    )
    optometrist_id: Id | None = Field(default=None, description="omit: any qualified one")
    channel: Channel
    customer: Customer
    channel_message_id: ChannelMessageId | None = Field(
        default=None,
        description="the channel's message id; the idempotency key when no Idempotency-Key "
        "header is sent",
    )


class CancelRequest(RequestModel):
    by: Actor
    reason: str | None = Field(default=None, max_length=500)


class RescheduleRequest(RequestModel):
    slot_start: RequestInstant = Field(description="the new start, RFC 3339 with offset")
    optometrist_id: Id | None = None


class StaffActionRequest(RequestModel):
    staff_id: Id | None = None


class CompleteRequest(RequestModel):
    optometrist_id: Id | None = Field(default=None, description="who did the exam")


class ResultSummaryRequest(RequestModel):
    optometrist_id: Id = Field(description="who did the exam")
    summary: str = Field(min_length=1, max_length=2000, description="sent on to the customer")


class CustomerOut(BaseModel):
    name: str | None = None
    phone: str | None = None
    locale: Locale = "en"


class HistoryEntry(BaseModel):
    event: str = Field(examples=["rescheduled"])
    at: AwareDatetime
    slot_start: AwareDatetime | None = None
    optometrist_id: str | None = None
    previous_slot_start: AwareDatetime | None = None
    previous_optometrist_id: str | None = None
    by: Actor | None = None
    reason: str | None = None
    late: bool | None = None
    cause: str | None = None
    staff_id: str | None = None


class Booking(BaseModel):
    booking_id: str
    store_id: str
    status: BookingStatus
    customer_ref: str
    customer: CustomerOut
    channel: Channel
    exam_type: str
    optometrist_id: str
    slot_start: AwareDatetime = Field(description="UTC")
    slot_end: AwareDatetime = Field(description="UTC")
    local_start: AwareDatetime = Field(description="store-local wall time with its offset")
    local_end: AwareDatetime = Field(description="store-local wall time with its offset")
    timezone: str = Field(examples=["Asia/Shanghai"])
    created_at: AwareDatetime
    updated_at: AwareDatetime
    history: list[HistoryEntry]


class BookingPage(BaseModel):
    items: list[Booking]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: last")


class Accepted(BaseModel):
    """The decision did not arrive in time; it will be stored under `status_url`."""

    status: Literal["pending"] = "pending"
    correlation_id: str
    status_url: str
    booking_id: str | None = Field(
        default=None,
        description="the booking this request concerns; for a new booking, the id it gets if "
        "this request books one (a retry, or the customer's same slot from another channel, "
        "resolves to the existing booking instead: the status URL's answer names it)",
    )


class CommandStatus(BaseModel):
    status: Literal["pending", "done"]
    http_status: int | None = Field(default=None, description="set when done")
    body: dict[str, Any] | None = Field(
        default=None, description="set when done: the Booking or the problem the request got"
    )


class Slot(BaseModel):
    local_time: str = Field(examples=["09:30"])
    start: AwareDatetime = Field(description="with the store's offset")
    start_utc: AwareDatetime
    free_count: int = Field(ge=0)


class Availability(BaseModel):
    store_id: str
    date: dt.date
    timezone: str
    exam_type: str
    duration_minutes: int | None = Field(description="null when the store has no such exam")
    slots: list[Slot]
    seq: int | None = Field(description="version of the view; null when none exists yet")


class SlotAlternative(BaseModel):
    start: AwareDatetime = Field(description="with the store's offset")
    start_utc: AwareDatetime


class Problem(BaseModel):
    """RFC 9457 problem details (`application/problem+json`)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    code: str = Field(examples=["slot_taken"])
    detail: str
    alternatives: list[SlotAlternative] | None = None
    existing_booking_id: str | None = None


# ---- waitlist -----------------------------------------------------------------------------


class WaitlistRequest(RequestModel):
    store_id: Id
    exam_type: Id
    customer: Customer
    channel: Channel
    date_from: RequestDay = Field(description="first store-local day that suits")
    date_to: RequestDay = Field(description="last store-local day that suits")
    time_from: LocalTime | None = Field(default=None, description="store-local, e.g. 09:00")
    time_to: LocalTime | None = Field(default=None, description="store-local, e.g. 12:00")
    optometrist_id: Id | None = Field(default=None, description="omit: any qualified one")
    priority: int = Field(
        default=0, ge=0, le=100, description="higher is offered first; then join order"
    )

    @model_validator(mode="after")
    def _check_window(self) -> Self:
        if self.date_to < self.date_from:
            raise ValueError("date_to must not be before date_from")
        if self.time_from and self.time_to and self.time_to <= self.time_from:
            raise ValueError("time_to must be after time_from")
        return self


class OfferRequest(RequestModel):
    customer_ref: Id | None = Field(
        default=None, description="checked against the offer's customer when given"
    )


OfferState = Literal["live", "accepted", "taken", "expired", "declined"]


class Offer(BaseModel):
    offer_token: str
    waitlist_entry_id: str
    store_id: str | None = None
    exam_type: str
    optometrist_id: str
    slot_start: AwareDatetime = Field(description="UTC")
    local_start: AwareDatetime = Field(description="store-local wall time with its offset")
    hold_until: AwareDatetime = Field(description="UTC; nobody else can take the slot before")
    rank: int
    state: OfferState
    booking_id: str | None = Field(default=None, description="accepted or taken: the booking")


class WaitlistEntry(BaseModel):
    waitlist_entry_id: str
    store_id: str
    status: Literal["waiting", "filled", "left", "expired"]
    customer_ref: str
    customer: CustomerOut
    channel: Channel
    exam_type: str
    optometrist_id: str | None
    priority: int = 0
    date_from: dt.date
    date_to: dt.date
    time_from: str | None
    time_to: str | None
    joined_at: AwareDatetime
    offers: list[Offer] = Field(description="offers made to this entry, newest last")


class StoreWaitlist(BaseModel):
    store_id: str
    date: dt.date
    entries: list[WaitlistEntry]
