"""HTTP request and response models of the booking API (the OpenAPI schema comes from these).

Times leave as RFC 3339 with an offset: UTC (`...Z`) and the store-local wall time alongside.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.events.base import Actor, Channel, Id, Locale
from schemas.events.booking import Customer
from services.booking.adapters.bookings import BookingStatus

ChannelMessageId = Annotated[str, Field(min_length=1, max_length=200)]


class RequestModel(BaseModel):
    # A misspelt optional field must not be silently dropped.
    model_config = ConfigDict(extra="forbid")


class BookingRequest(RequestModel):
    store_id: Id
    exam_type: Id
    slot_start: AwareDatetime = Field(
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
    slot_start: AwareDatetime = Field(description="the new start, RFC 3339 with offset")
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
    booking_id: str | None = None


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
