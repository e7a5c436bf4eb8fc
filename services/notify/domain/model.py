"""What notify knows and produces, as plain values (no I/O)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from schemas.events.base import Channel
from schemas.events.notify import NotificationKind

# Fixed namespace: the same (source event, kind, recipient) gives the same id in every process.
_NOTIFICATION_NAMESPACE = uuid.UUID("0d8e5f5e-8a41-4c4f-9d83-6c1c3f1e7a20")


def notification_id(source_event_id: str, kind: str, recipient: str) -> str:
    """Deterministic id: a redelivered event yields the same id, so never a second message."""
    return str(uuid.uuid5(_NOTIFICATION_NAMESPACE, f"{source_event_id}\x1f{kind}\x1f{recipient}"))


@dataclass(frozen=True)
class Recipient:
    customer_ref: str
    name: str | None = None
    phone: str | None = None
    chat_id: str | None = None
    locale: str | None = None


@dataclass(frozen=True)
class StoreProfile:
    """Per-store settings notify keeps (from StoreRegistered and its own config API)."""

    store_id: str
    timezone: str = "UTC"
    locale: str = "en"
    name: str = ""
    chain_id: str | None = None
    reminder_offsets_min: tuple[int, ...] | None = None
    exam_names: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BookingContext:
    """What notify remembers of a booking: later events carry only `customer_ref`."""

    booking_id: str
    store_id: str
    recipient: Recipient
    channel: Channel
    timezone: str
    exam_type: str
    slot_start: dt.datetime
    optometrist_id: str
    status: str = "confirmed"


@dataclass(frozen=True)
class Notification:
    notification_id: str
    kind: NotificationKind
    template: str  # template key, e.g. "cancellation.by_store" or "reminder"
    store_id: str
    booking_id: str | None
    recipient: Recipient
    channel: Channel
    locale: str
    subject: str
    text: str
    source_event_id: str
    due_at: dt.datetime
    stale_after: dt.datetime | None = None
    slot_start: dt.datetime | None = None


@dataclass
class Plan:
    """What handling one event means: messages to queue and booking/reminder bookkeeping."""

    notifications: list[Notification] = field(default_factory=list)
    context: BookingContext | None = None
    # Pending reminders of this booking for any other slot start are dropped (None: all).
    drop_reminders: bool = False
    keep_reminders_for: dt.datetime | None = None
    # A post-visit rating request opens a window for a 1-5 reply.
    awaits_rating: bool = False
    missing_context: bool = False
