"""Roster domain: stores, exam types, optometrists and shifts, in store-local time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, time
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class TimeRange:
    start: time
    end: time

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"time range must end after it starts: {self.start}-{self.end}")


@dataclass(frozen=True)
class Store:
    store_id: str
    name: str
    region: str
    timezone: str
    # weekday ("mon".."sun") -> opening ranges in local time; a missing day is closed
    opening_hours: dict[str, tuple[TimeRange, ...]]
    locale: str = "zh-CN"
    slot_minutes: int = 15
    # for the booking page: store search and nearest store first
    address: str | None = None
    latitude: float | None = None
    longitude: float | None = None

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)  # raises for an unknown IANA zone
        unknown = set(self.opening_hours) - set(WEEKDAYS)
        if unknown:
            raise ValueError(f"unknown weekdays in opening hours: {sorted(unknown)}")

    def hours_on(self, day: date) -> tuple[TimeRange, ...]:
        return self.opening_hours.get(WEEKDAYS[day.weekday()], ())


@dataclass(frozen=True)
class ExamType:
    code: str
    name: str
    duration_minutes: int
    required_skill: str
    preparation_notes: str | None = None  # shown to customers when they book


@dataclass(frozen=True)
class Optometrist:
    optometrist_id: str
    name: str
    skills: frozenset[str]
    home_store_id: str
    store_ids: tuple[str, ...]


@dataclass(frozen=True)
class Shift:
    shift_id: str
    optometrist_id: str
    store_id: str
    day: date
    hours: TimeRange
    breaks: tuple[TimeRange, ...] = field(default=())


@dataclass(frozen=True)
class Chain:
    stores: tuple[Store, ...]
    exam_types: tuple[ExamType, ...]
    optometrists: tuple[Optometrist, ...]
    shifts: tuple[Shift, ...]


@dataclass(frozen=True)
class Leave:
    """Whole local days off (``kind`` "leave" or "sick"), inclusive."""

    leave_id: str
    optometrist_id: str
    start_date: date
    end_date: date
    kind: str = "leave"

    def covers(self, day: date) -> bool:
        return self.start_date <= day <= self.end_date


@dataclass(frozen=True)
class Training:
    """Time away from the exam room, in the local time of ``timezone``."""

    training_id: str
    optometrist_id: str
    day: date
    hours: TimeRange
    timezone: str


@dataclass(frozen=True)
class DayPattern:
    hours: TimeRange
    breaks: tuple[TimeRange, ...] = ()


@dataclass(frozen=True)
class WeeklyTemplate:
    """A recurring week for one optometrist at one store: weekday -> hours and breaks."""

    template_id: str
    optometrist_id: str
    store_id: str
    days: dict[str, DayPattern]

    def __post_init__(self) -> None:
        unknown = set(self.days) - set(WEEKDAYS)
        if unknown:
            raise ValueError(f"unknown weekdays in template: {sorted(unknown)}")
