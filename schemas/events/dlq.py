"""Dead letters (``*.dlq.v1``): a record a consumer gave up on, kept byte-exact for replay."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import ClassVar

from pydantic import Field

from schemas.events.base import EventPayload, PayloadModel, UtcDatetime
from schemas.registry import dlq_topic_for

__all__ = ["DeadLetter", "DeadLetterHeader"]


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(data: str | None) -> bytes | None:
    return None if data is None else base64.b64decode(data, validate=True)


class DeadLetterHeader(PayloadModel):
    # A list rather than a dict: Kafka headers may repeat a name and replay must be exact.
    name: str
    value_b64: str | None = None


class DeadLetter(EventPayload):
    """Produced to ``dlq_topic_for(original_topic)`` with the original key."""

    event_type: ClassVar[str] = "DeadLetter"
    topic: ClassVar[str] = "*.dlq.v1"

    original_topic: str = Field(min_length=1)
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    key_b64: str | None = None
    value_b64: str | None = None
    headers: list[DeadLetterHeader] = Field(default_factory=list)
    error: str = Field(max_length=8000)
    error_type: str | None = Field(default=None, description="exception class or DecodeError kind")
    failed_at: UtcDatetime
    consumer: str = Field(min_length=1, description="consumer group / service that gave up")
    attempts: int = Field(default=1, ge=1)

    @classmethod
    def from_record(
        cls,
        *,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Iterable[tuple[str, bytes | None]] = (),
        error: str,
        failed_at: UtcDatetime,
        consumer: str,
        error_type: str | None = None,
        attempts: int = 1,
    ) -> DeadLetter:
        return cls(
            original_topic=topic,
            partition=partition,
            offset=offset,
            key_b64=_b64(key),
            value_b64=_b64(value),
            headers=[DeadLetterHeader(name=n, value_b64=_b64(v)) for n, v in headers],
            error=error[:8000],
            error_type=error_type,
            failed_at=failed_at,
            consumer=consumer,
            attempts=attempts,
        )

    def original_key(self) -> bytes | None:
        return _unb64(self.key_b64)

    def original_value(self) -> bytes | None:
        return _unb64(self.value_b64)

    def original_headers(self) -> list[tuple[str, bytes | None]]:
        return [(h.name, _unb64(h.value_b64)) for h in self.headers]

    def message_key(self, store_id: str) -> bytes | None:
        # DLQ topics keep the original key so a replay lands on the same partition.
        return self.original_key()

    def default_topic(self) -> str:
        return dlq_topic_for(self.original_topic)
