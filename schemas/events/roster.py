"""Roster events (``roster.events.v1``), produced by the roster service, replicated everywhere.

Every roster event is about one store (the envelope ``store_id`` and Kafka key). A change that
touches several stores (an optometrist working in two stores, a chain-wide exam type) is published
once per store, so each store's availability processor sees it on that store's partition.
Times are store-local: dates are local dates and times are ``HH:MM`` wall-clock strings, which
the processor turns into UTC instants with the store's IANA zone (DST-correct).
"""

from __future__ import annotations

import datetime as dt
import itertools
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from schemas.events.base import (
    EventPayload,
    Id,
    Locale,
    LocalTime,
    PayloadModel,
    Timezone,
    UtcDatetime,
    check_local_interval,
)
from schemas.registry import ROSTER_EVENTS

__all__ = [
    "WEEKDAYS",
    "ExamTypeDefined",
    "LeaveGranted",
    "LeaveKind",
    "LocalInterval",
    "OpeningHours",
    "OpeningInterval",
    "OptometristJoined",
    "OptometristLeft",
    "RosterEvent",
    "ShiftCancelled",
    "ShiftChanged",
    "ShiftPublished",
    "StoreHoursChanged",
    "StoreRegistered",
    "TrainingScheduled",
    "Weekday",
]

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Index = ``date.weekday()`` (Monday is 0)."""


class OpeningInterval(PayloadModel):
    open: LocalTime
    close: LocalTime

    @model_validator(mode="after")
    def _check(self) -> Self:
        check_local_interval(self.open, self.close, "opening interval")
        return self


class LocalInterval(PayloadModel):
    """A store-local ``[start, end)`` wall-clock interval, e.g. a break."""

    start: LocalTime
    end: LocalTime

    @model_validator(mode="after")
    def _check(self) -> Self:
        check_local_interval(self.start, self.end, "interval")
        return self


def _normalise_weekdays(value: Any) -> Any:
    # Accept 0-6 (date.weekday()), "0"-"6", "mon" or "monday" in any case; emit "mon".."sun".
    if not isinstance(value, dict):
        return value
    out: dict[Any, Any] = {}
    for raw_key, intervals in value.items():
        key: Any = raw_key
        if isinstance(raw_key, int) and not isinstance(raw_key, bool) and 0 <= raw_key <= 6:
            key = WEEKDAYS[raw_key]
        elif isinstance(raw_key, str):
            k = raw_key.strip().lower()
            if k.isdigit() and 0 <= int(k) <= 6:
                key = WEEKDAYS[int(k)]
            elif k[:3] in WEEKDAYS and k in (k[:3], _FULL_DAY_NAMES[k[:3]]):
                key = k[:3]
        if key in out:
            raise ValueError(f"weekday {key!r} given twice in opening_hours")
        out[key] = intervals
    return out


_FULL_DAY_NAMES = {
    "mon": "monday",
    "tue": "tuesday",
    "wed": "wednesday",
    "thu": "thursday",
    "fri": "friday",
    "sat": "saturday",
    "sun": "sunday",
}


def _check_no_overlap(
    hours: dict[Weekday, list[OpeningInterval]],
) -> dict[Weekday, list[OpeningInterval]]:
    for day, intervals in hours.items():
        ordered = sorted(intervals, key=lambda i: i.open)
        for a, b in itertools.pairwise(ordered):
            if b.open < a.close:
                raise ValueError(f"opening intervals overlap on {day}")
    return hours


OpeningHours = Annotated[
    dict[Weekday, list[OpeningInterval]],
    BeforeValidator(_normalise_weekdays),
    AfterValidator(_check_no_overlap),
]
"""Opening intervals per weekday (keys ``mon``..``sun``; 0-6 and full names are accepted on
input). A missing weekday means closed that day."""


class RosterEvent(EventPayload):
    topic: ClassVar[str] = ROSTER_EVENTS


class StoreRegistered(RosterEvent):
    event_type: ClassVar[str] = "StoreRegistered"
    event_version: ClassVar[str] = "1.1"

    store_id: Id
    name: str = Field(min_length=1, max_length=200)
    region: str = Field(pattern=r"^[a-z][a-z0-9-]*$", description="the store's home region")
    timezone: Timezone
    opening_hours: OpeningHours
    slot_minutes: int = Field(default=15, ge=5, le=240)
    locale: Locale = "en"
    # Since 1.1, for the booking page (store search, nearest store first).
    address: str | None = Field(default=None, max_length=500, description="since 1.1")
    latitude: float | None = Field(default=None, ge=-90, le=90, description="since 1.1")
    longitude: float | None = Field(default=None, ge=-180, le=180, description="since 1.1")


class StoreHoursChanged(RosterEvent):
    """Replaces the opening hours (from ``effective_from``, default: at once)."""

    event_type: ClassVar[str] = "StoreHoursChanged"

    store_id: Id
    opening_hours: OpeningHours
    slot_minutes: int | None = Field(default=None, ge=5, le=240)
    effective_from: dt.date | None = None
    closed_dates: list[dt.date] = Field(default_factory=list, description="holidays etc.")


class ExamTypeDefined(RosterEvent):
    """An exam type offered by the store (re-publishing with the same code updates it)."""

    event_type: ClassVar[str] = "ExamTypeDefined"
    event_version: ClassVar[str] = "1.1"

    code: Id
    name: str = Field(min_length=1, max_length=200)
    duration_minutes: int = Field(ge=5, le=480)
    required_skill: Id
    active: bool = True
    preparation_notes: str | None = Field(
        default=None, max_length=1000, description="shown to customers when booking (since 1.1)"
    )


class OptometristJoined(RosterEvent):
    event_type: ClassVar[str] = "OptometristJoined"

    optometrist_id: Id
    name: str = Field(min_length=1, max_length=200)
    skills: list[Id] = Field(min_length=1)
    home_store_id: Id
    store_ids: list[Id] = Field(min_length=1)


class OptometristLeft(RosterEvent):
    event_type: ClassVar[str] = "OptometristLeft"

    optometrist_id: Id
    effective_date: dt.date = Field(description="first local date not worked")


class ShiftPublished(RosterEvent):
    """A working shift (store-local). Breaks must lie inside the shift.

    Since 1.1 the roster also states the store's zone and the shift's UTC instants (resolved
    DST-correctly by the roster); ``date``/``start``/``end`` stay authoritative."""

    event_type: ClassVar[str] = "ShiftPublished"
    event_version: ClassVar[str] = "1.1"

    shift_id: Id
    optometrist_id: Id
    store_id: Id
    date: dt.date
    start: LocalTime
    end: LocalTime
    breaks: list[LocalInterval] = Field(default_factory=list)
    timezone: Timezone | None = Field(default=None, description="the store's zone (since 1.1)")
    start_utc: UtcDatetime | None = Field(default=None, description="since 1.1")
    end_utc: UtcDatetime | None = Field(default=None, description="since 1.1")

    @model_validator(mode="after")
    def _check(self) -> Self:
        check_local_interval(self.start, self.end, "shift")
        for b in self.breaks:
            if b.start < self.start or b.end > self.end:
                raise ValueError(f"break {b.start}-{b.end} outside shift {self.start}-{self.end}")
        return self


class ShiftChanged(ShiftPublished):
    """Full replacement of a published shift (same ``shift_id``)."""

    event_type: ClassVar[str] = "ShiftChanged"


class ShiftCancelled(RosterEvent):
    event_type: ClassVar[str] = "ShiftCancelled"

    shift_id: Id
    optometrist_id: Id
    store_id: Id
    date: dt.date


class LeaveKind(StrEnum):
    LEAVE = "leave"
    SICK = "sick"


class LeaveGranted(RosterEvent):
    """Whole local days ``start_date..end_date`` (inclusive) off."""

    event_type: ClassVar[str] = "LeaveGranted"

    leave_id: Id
    optometrist_id: Id
    start_date: dt.date
    end_date: dt.date
    kind: LeaveKind = LeaveKind.LEAVE

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.end_date < self.start_date:
            raise ValueError("end_date must not be before start_date")
        return self


class TrainingScheduled(RosterEvent):
    """Time away from the exam room on one local date."""

    event_type: ClassVar[str] = "TrainingScheduled"
    event_version: ClassVar[str] = "1.1"

    training_id: Id
    optometrist_id: Id
    date: dt.date
    start: LocalTime
    end: LocalTime
    timezone: Timezone | None = Field(default=None, description="zone of start/end (since 1.1)")
    start_utc: UtcDatetime | None = Field(default=None, description="since 1.1")
    end_utc: UtcDatetime | None = Field(default=None, description="since 1.1")

    @model_validator(mode="after")
    def _check(self) -> Self:
        check_local_interval(self.start, self.end, "training")
        return self
