"""Booking domain model: a store's configuration, its optometrists' shifts per local day,
and the bookings that occupy them. Pure data, no I/O; times are UTC epoch seconds."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, TypeVar


class BookingStatus(StrEnum):
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    CHECKED_IN = "checked_in"
    NO_SHOW = "no_show"
    COMPLETED = "completed"
    DISPLACED = "displaced"  # a roster change left nobody to see the customer then


# Lifecycle (requested -> confirmed | rejected happens in the decision itself).
# Rescheduling keeps a booking CONFIRMED with new times.
TRANSITIONS: dict[BookingStatus, frozenset[BookingStatus]] = {
    BookingStatus.CONFIRMED: frozenset(
        {BookingStatus.CANCELLED, BookingStatus.CHECKED_IN, BookingStatus.NO_SHOW}
    ),
    BookingStatus.CHECKED_IN: frozenset({BookingStatus.COMPLETED}),
    BookingStatus.CANCELLED: frozenset(),
    BookingStatus.NO_SHOW: frozenset(),
    BookingStatus.COMPLETED: frozenset(),
    BookingStatus.DISPLACED: frozenset(),
}


class Reason(StrEnum):
    """Why a command was refused; the values are the wire/HTTP codes."""

    SLOT_TAKEN = "slot_taken"
    NO_SHIFT = "no_shift"
    NO_SKILL = "no_skill"
    OUTSIDE_HOURS = "outside_hours"
    NOT_ON_GRID = "not_on_grid"
    IN_PAST = "in_past"
    UNKNOWN_STORE = "unknown_store"
    UNKNOWN_EXAM_TYPE = "unknown_exam_type"
    UNKNOWN_BOOKING = "unknown_booking"
    DUPLICATE = "duplicate"
    INVALID_TRANSITION = "invalid_transition"
    HELD = "held"  # kept for customers with a live waitlist offer
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    WAITLIST_FULL = "waitlist_full"


@dataclass(frozen=True)
class ExamSpec:
    code: str
    duration_minutes: int
    required_skill: str
    active: bool = True


H = TypeVar("H")
H_co = TypeVar("H_co", covariant=True)
C = TypeVar("C", bound="ScheduledHours[Any]")


class ScheduledHours(Protocol[H_co]):
    """Opening hours that take over from a date (the processor's `HoursChange`, the API
    catalog's alike): both read them with the functions below, so they agree on every date."""

    @property
    def effective_from(self) -> dt.date: ...
    @property
    def opening_hours(self) -> H_co: ...
    @property
    def slot_minutes(self) -> int | None: ...


def hours_in_force(
    hours: H, slot_minutes: int, changes: Iterable[ScheduledHours[H]], date: dt.date
) -> tuple[H, int]:
    """The hours and slot grid in force on a local date: the last scheduled change on or
    before it (`changes` sorted by date), else the current ones."""
    for change in changes:
        if change.effective_from > date:
            break
        hours, slot_minutes = change.opening_hours, change.slot_minutes or slot_minutes
    return hours, slot_minutes


def with_scheduled(changes: Iterable[C], change: C) -> list[C]:
    """`changes` with `change` added (replacing one from the same date), sorted by date."""
    kept = [c for c in changes if c.effective_from != change.effective_from]
    return sorted([*kept, change], key=lambda c: c.effective_from)


@dataclass(frozen=True)
class HoursChange:
    """Opening hours (and grid) that take over from `effective_from`: a scheduled change."""

    effective_from: dt.date
    opening_hours: dict[str, list[tuple[str, str]]]
    slot_minutes: int | None = None


@dataclass
class StoreConfig:
    store_id: str
    timezone: str
    slot_minutes: int = 15
    # weekday "mon".."sun" -> [("09:00", "21:00"), ...] store-local
    opening_hours: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    closed_dates: set[dt.date] = field(default_factory=set)
    region: str = ""
    locale: str = "en"
    exam_types: dict[str, ExamSpec] = field(default_factory=dict)
    # optometrist id -> skills (only those who work at this store)
    optometrists: dict[str, frozenset[str]] = field(default_factory=dict)
    # how long before the start a cancellation counts as late
    late_cancel_minutes: int = 24 * 60
    # False until StoreRegistered arrives (exam types may be defined first)
    registered: bool = False
    # optometrist id -> first local date not worked (announced ahead by OptometristLeft)
    departures: dict[str, dt.date] = field(default_factory=dict)
    # scheduled changes of the hours, by effective_from (the booking API's catalog alike)
    hours_changes: list[HoursChange] = field(default_factory=list)

    def hours_on(self, date: dt.date) -> tuple[dict[str, list[tuple[str, str]]], int]:
        """The opening hours and slot grid in force on a local date."""
        return hours_in_force(self.opening_hours, self.slot_minutes, self.hours_changes, date)

    def schedule(self, change: HoursChange) -> None:
        self.hours_changes = with_scheduled(self.hours_changes, change)


@dataclass(frozen=True)
class Shift:
    """A working shift on one store-local date; breaks lie inside it."""

    shift_id: str
    optometrist_id: str
    date: dt.date
    start: str  # "HH:MM" local
    end: str
    breaks: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Busy:
    """An interval an optometrist is booked for: [start, end) UTC epoch seconds.

    Slots: the processor keeps one per booking in its decoded store-days; without an instance
    dict a full collection walks 30,000 of them in 32 ms instead of 55."""

    start: int
    end: int
    booking_id: str
    customer_ref: str
    exam_type: str


@dataclass
class Day:
    """One store-local day: shifts and who is busy when. The unit of state (and of change)."""

    date: dt.date
    shifts: dict[str, Shift] = field(default_factory=dict)
    busy: dict[str, list[Busy]] = field(default_factory=dict)  # optometrist -> sorted
    # leave / training id -> (optometrist, start, end) UTC epoch seconds: time off the roster
    absences: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    seq: int = 0  # bumped on every change; orders the published availability views

    def occupy(self, optometrist_id: str, busy: Busy) -> None:
        entries = self.busy.setdefault(optometrist_id, [])
        entries.append(busy)
        entries.sort(key=lambda b: b.start)

    def release(self, booking_id: str) -> Busy | None:
        for entries in self.busy.values():
            for i, b in enumerate(entries):
                if b.booking_id == booking_id:
                    return entries.pop(i)
        return None

    def load(self, optometrist_id: str) -> int:
        return len(self.busy.get(optometrist_id, ()))

    def copy(self) -> Day:
        """A day with containers of its own (shifts and busy entries are immutable)."""
        return Day(
            date=self.date,
            shifts=dict(self.shifts),
            busy={o: list(entries) for o, entries in self.busy.items()},
            absences=dict(self.absences),
            seq=self.seq,
        )


@dataclass
class Booking:
    booking_id: str
    store_id: str
    customer_ref: str
    exam_type: str
    optometrist_id: str
    start: int  # UTC epoch seconds
    end: int
    status: BookingStatus
    idempotency_key: str
    channel: str
    date: dt.date  # store-local date of the start
    version: int = 1

    def can_become(self, status: BookingStatus) -> bool:
        return status in TRANSITIONS[self.status]
