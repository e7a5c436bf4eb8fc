"""PII-free facts (``booking.facts.v1``) replicated to HQ for analytics.

Data residency: this topic leaves the region, so these models must never carry customer names,
phone numbers, chat ids or free text. A unit test walks every field to enforce that.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from schemas.events.base import Actor, Channel, EventPayload, Id, RejectionReason
from schemas.registry import BOOKING_FACTS

__all__ = ["AvailabilityViewed", "BookingFact", "FactKind"]


class FactKind(StrEnum):
    REQUESTED = "requested"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    RESCHEDULED = "rescheduled"
    CHECKED_IN = "checked_in"
    NO_SHOW = "no_show"
    COMPLETED = "completed"
    DISPLACED = "displaced"
    REASSIGNED = "reassigned"
    WAITLIST_JOINED = "waitlist_joined"
    WAITLIST_OFFERED = "waitlist_offered"
    WAITLIST_FILLED = "waitlist_filled"


class BookingFact(EventPayload):
    """One step of the booking funnel. ``local_date`` is the store-local day the fact happened."""

    event_type: ClassVar[str] = "BookingFact"
    # 1.1: fact `reassigned`; 1.2: reasons `idempotency_key_reused`, `internal_error`;
    # 1.3: reason `waitlist_full`
    event_version: ClassVar[str] = "1.3"
    topic: ClassVar[str] = BOOKING_FACTS

    fact: FactKind
    store_id: Id
    region: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    exam_type: Id
    channel: Channel
    local_date: dt.date
    reason: RejectionReason | None = Field(default=None, description="for `rejected`")
    lead_minutes: int | None = Field(
        default=None, description="minutes from the fact to the slot start (booking lead time)"
    )
    cancelled_by: Actor | None = None
    late: bool | None = Field(default=None, description="for `cancelled`: inside the late window")


class AvailabilityViewed(EventPayload):
    """Top of the funnel: someone looked at a store's free slots."""

    event_type: ClassVar[str] = "AvailabilityViewed"
    event_version: ClassVar[str] = "1.1"  # 1.1: count
    topic: ClassVar[str] = BOOKING_FACTS

    store_id: Id
    local_date: dt.date = Field(description="store-local day of the view")
    viewed_date: dt.date | None = Field(default=None, description="the day whose slots were shown")
    exam_type: Id | None = None
    channel: Channel
    count: int = Field(default=1, ge=1, description="views summed into this fact (API batches)")
