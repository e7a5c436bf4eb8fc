"""Free-slot view per store and local day (``availability.v1``, compacted, key ``store_id:date``).

Compaction keeps the latest view per store-day; ``seq`` lets projections (Redis) drop updates
that arrive out of order after a replay.
"""

from __future__ import annotations

import datetime as dt
from typing import ClassVar, Self

from pydantic import Field, model_validator

from schemas.events.base import EventPayload, Id, LocalTime, PayloadModel, Timezone, UtcDatetime
from schemas.registry import AVAILABILITY

__all__ = ["ExamTypeSlots", "StoreDayAvailability", "availability_key"]


def availability_key(store_id: str, local_date: dt.date) -> str:
    """Kafka key of ``availability.v1``: ``<store_id>:<YYYY-MM-DD>``."""
    return f"{store_id}:{local_date.isoformat()}"


class ExamTypeSlots(PayloadModel):
    """Free start times of one exam type: free if any optometrist with the skill can take it."""

    duration_minutes: int = Field(ge=5, le=480)
    free_starts: list[LocalTime] = Field(default_factory=list)
    free_count: int = Field(ge=0)
    capacity: list[int] = Field(
        default_factory=list,
        description="since 1.1: per entry of free_starts, how many optometrists could take it",
    )
    second_run: list[int] = Field(
        default_factory=list,
        description="since 1.2: indices into free_starts of the starts in the second run of a "
        "local hour the clocks repeat (when DST ends). Empty: none, or a "
        "view before 1.2, where a wall time lower than the one before marks the second run",
    )

    @model_validator(mode="after")
    def _check_count(self) -> Self:
        if self.free_count != len(self.free_starts):
            raise ValueError("free_count must equal len(free_starts)")
        if self.capacity and len(self.capacity) != len(self.free_starts):
            raise ValueError("capacity must have one entry per free start")
        if any(not 0 <= i < len(self.free_starts) for i in self.second_run):
            raise ValueError("second_run must index free_starts")
        return self


class StoreDayAvailability(EventPayload):
    event_type: ClassVar[str] = "StoreDayAvailability"
    event_version: ClassVar[str] = "1.2"
    topic: ClassVar[str] = AVAILABILITY

    store_id: Id
    local_date: dt.date
    timezone: Timezone
    slot_minutes: int = Field(ge=5, le=240)
    exam_types: dict[str, ExamTypeSlots] = Field(
        default_factory=dict, description="keyed by exam type code"
    )
    computed_at: UtcDatetime
    seq: int = Field(default=0, ge=0, description="monotonic per store-day")

    def message_key(self, store_id: str) -> bytes | None:
        return availability_key(self.store_id, self.local_date).encode()
