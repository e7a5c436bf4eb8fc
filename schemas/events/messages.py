"""Inbound customer questions and their routing (key ``conversation_id``; PII, stays local)."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from schemas.events.base import Channel, EventPayload, Id, Locale, UtcDatetime
from schemas.registry import MESSAGES_INBOUND, MESSAGES_ROUTED

__all__ = ["MessageReceived", "MessageRouted", "StaffRole"]


class StaffRole(StrEnum):
    OPTOMETRIST = "optometrist"
    FRONT_DESK = "front_desk"
    CONTACT_LENS_SPECIALIST = "contact_lens_specialist"


class MessageReceived(EventPayload):
    event_type: ClassVar[str] = "MessageReceived"
    topic: ClassVar[str] = MESSAGES_INBOUND

    conversation_id: Id
    channel: Channel
    message_id: Id = Field(description="the channel's message id (idempotency)")
    customer_ref: Id
    store_id: Id
    locale: Locale
    text: str = Field(max_length=4000)
    received_at: UtcDatetime

    def message_key(self, store_id: str) -> bytes | None:
        return self.conversation_id.encode()


class MessageRouted(EventPayload):
    """The message with the staff role it was routed to; ``rule_id`` None = default front desk."""

    event_type: ClassVar[str] = "MessageRouted"
    topic: ClassVar[str] = MESSAGES_ROUTED

    conversation_id: Id
    message_id: Id
    channel: Channel
    customer_ref: Id
    store_id: Id
    locale: Locale
    text: str = Field(max_length=4000)
    role: StaffRole
    rule_id: Id | None = None
    matched_keyword: str | None = Field(default=None, max_length=200)

    def message_key(self, store_id: str) -> bytes | None:
        return self.conversation_id.encode()
