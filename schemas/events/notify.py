"""Notification delivery attempts (``notify.deliveries.v1``, key ``notification_id``)."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from schemas.events.base import Channel, EventPayload, Id
from schemas.registry import NOTIFY_DELIVERIES

__all__ = ["DeliveryAttempted", "DeliveryStatus", "NotificationKind"]


class NotificationKind(StrEnum):
    CONFIRMATION = "confirmation"
    CHANGE = "change"
    CANCELLATION = "cancellation"
    REMINDER = "reminder"
    WAITLIST_OFFER = "waitlist_offer"
    OFFER_TAKEN = "offer_taken"
    DISPLACEMENT = "displacement"
    EXAM_RESULT = "exam_result"
    FEEDBACK_REQUEST = "feedback_request"
    STAFF_MESSAGE = "staff_message"
    REASSIGNMENT = "reassignment"  # 1.1: same time, another optometrist
    OFFER_EXPIRED = "offer_expired"  # 1.2: a waitlist offer's hold ran out


class DeliveryStatus(StrEnum):
    SENT = "sent"
    FAILED = "failed"  # will be retried with backoff
    DEAD_LETTERED = "dead_lettered"  # retries exhausted; the notification went to notify.dlq.v1
    SKIPPED = "skipped"  # e.g. already delivered under this notification id, or opted out


class DeliveryAttempted(EventPayload):
    """One call (or decision not to call) of a channel adapter for a notification id."""

    event_type: ClassVar[str] = "DeliveryAttempted"
    event_version: ClassVar[str] = "1.2"  # 1.1: kind `reassignment`; 1.2: `offer_expired`
    topic: ClassVar[str] = NOTIFY_DELIVERIES

    notification_id: Id = Field(description="deterministic: one adapter call per id")
    kind: NotificationKind
    channel: Channel
    attempt: int = Field(ge=1)
    status: DeliveryStatus
    error: str | None = Field(default=None, max_length=2000)
    latency_ms: float | None = Field(default=None, ge=0)
    source_event_id: str = Field(description="event_id of the event that caused the notification")
    booking_id: Id | None = None

    def message_key(self, store_id: str) -> bytes | None:
        return self.notification_id.encode()
