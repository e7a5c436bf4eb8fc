"""Post-visit ratings (``feedback.events.v1``), replicated to HQ, so PII-free: no comment text."""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

from pydantic import Field

from schemas.events.base import Channel, EventPayload, Id
from schemas.registry import FEEDBACK_EVENTS

__all__ = ["FeedbackReceived"]


class FeedbackReceived(EventPayload):
    event_type: ClassVar[str] = "FeedbackReceived"
    topic: ClassVar[str] = FEEDBACK_EVENTS

    booking_id: Id
    store_id: Id
    rating: int = Field(ge=1, le=5)
    comment_present: bool = Field(description="the comment itself stays in the region")
    local_date: dt.date = Field(description="store-local day the feedback was given")
    channel: Channel | None = None
    exam_type: Id | None = None
