"""Roster validation, pure: every rule raises RosterViolation with a stable reason code."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from services.roster.domain.localtime import (
    Interval,
    NonexistentLocalTime,
    overlaps,
    utc_interval,
)
from services.roster.domain.model import Leave, Optometrist, Shift, Store, TimeRange, Training


class RosterViolation(Exception):
    """A change the roster refuses; ``reason`` is the machine-readable code."""

    def __init__(self, status: int, reason: str, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.extra = extra


@dataclass(frozen=True)
class PlacedShift:
    """A shift with the zone of its store, so shifts at different stores compare in UTC."""

    shift: Shift
    timezone: str
    # a published version that a pending draft replaces: it holds its time until that
    # draft is published
    superseded: bool = False

    @property
    def interval(self) -> Interval:
        return shift_interval(self.shift, self.timezone)


def shift_interval(shift: Shift, timezone: str) -> Interval:
    try:
        return utc_interval(shift.day, shift.hours.start, shift.hours.end, timezone)
    except NonexistentLocalTime as exc:
        raise RosterViolation(422, "nonexistent_local_time", str(exc)) from exc


def check_shift(shift: Shift, store: Store, optometrist: Optometrist) -> None:
    """Shape rules: the optometrist works at the store, breaks inside the shift, the shift
    inside one opening interval of that local day, and real local times (DST)."""
    if store.store_id not in optometrist.store_ids:
        raise RosterViolation(
            422, "not_assigned_to_store",
            f"{optometrist.optometrist_id} does not work at {store.store_id}",
        )  # fmt: skip
    for brk in shift.breaks:
        if not _inside(brk, shift.hours):
            raise RosterViolation(
                422, "break_outside_shift",
                f"break {_fmt(brk)} is outside shift {_fmt(shift.hours)}",
            )  # fmt: skip
    opening = store.hours_on(shift.day)
    if not any(_inside(shift.hours, r) for r in opening):
        hours = ", ".join(_fmt(r) for r in opening) or "closed"
        raise RosterViolation(
            422, "outside_opening_hours",
            f"shift {_fmt(shift.hours)} on {shift.day} is outside {store.store_id}'s opening "
            f"hours ({hours})",
        )  # fmt: skip
    shift_interval(shift, store.timezone)


def check_opening_hours(store: Store) -> None:
    """A weekday's opening intervals may touch but not overlap (the event contract refuses
    them, and a slot would be offered twice)."""
    for day, ranges in store.opening_hours.items():
        ordered = sorted(ranges, key=lambda r: r.start)
        for earlier, later in itertools.pairwise(ordered):
            if later.start < earlier.end:
                raise RosterViolation(
                    422, "overlapping_opening_hours",
                    f"opening hours {_fmt(earlier)} and {_fmt(later)} overlap on {day}",
                )  # fmt: skip


def check_no_overlap(candidate: PlacedShift, others: Iterable[PlacedShift]) -> None:
    """One optometrist never works two overlapping shifts, at any stores (compared in UTC,
    so a Shanghai shift and a Berlin shift are checked correctly)."""
    mine = candidate.interval
    for other in others:
        same = other.shift.shift_id == candidate.shift.shift_id
        if same or other.shift.optometrist_id != candidate.shift.optometrist_id:
            continue
        if overlaps(mine, other.interval):
            raise _overlap(candidate.shift, other)


def _overlap(shift: Shift, other: PlacedShift) -> RosterViolation:
    works = (
        f"{shift.optometrist_id} already works {other.shift.shift_id} at "
        f"{other.shift.store_id} on {other.shift.day} {_fmt(other.shift.hours)}"
    )
    if other.superseded:
        return RosterViolation(
            409, "overlapping_published_shift",
            f"{works} as published; that time is free only once its pending change is "
            "published (a swap: publish both shifts together)",
            conflicting_shift_id=other.shift.shift_id,
        )  # fmt: skip
    return RosterViolation(
        409, "overlapping_shift", works, conflicting_shift_id=other.shift.shift_id
    )


# One leave at most this long: each of its days becomes a store-day (and a view) in every
# store of the optometrist, in one transaction; a typo'd end year would be hundreds of thousands.
MAX_LEAVE_DAYS = 366


def check_leave(leave: Leave, today: date) -> None:
    """Leave starts today at the earliest (today is fine: a sick day is reported that day)."""
    if leave.end_date < leave.start_date:
        raise RosterViolation(422, "invalid_range", "end_date is before start_date")
    if (leave.end_date - leave.start_date).days >= MAX_LEAVE_DAYS:
        raise RosterViolation(
            422,
            "leave_too_long",
            f"one leave is at most {MAX_LEAVE_DAYS} days: grant more in parts",
        )
    if leave.start_date < today:
        raise RosterViolation(
            422, "leave_in_past", f"leave from {leave.start_date} starts before today ({today})"
        )


def check_training(training: Training, today: date) -> None:
    if training.day < today:
        raise RosterViolation(
            422, "training_in_past", f"training on {training.day} is before today ({today})"
        )
    try:
        utc_interval(training.day, training.hours.start, training.hours.end, training.timezone)
    except NonexistentLocalTime as exc:
        raise RosterViolation(422, "nonexistent_local_time", str(exc)) from exc


def _inside(inner: TimeRange, outer: TimeRange) -> bool:
    return outer.start <= inner.start and inner.end <= outer.end


def _fmt(r: TimeRange) -> str:
    return f"{r.start:%H:%M}-{r.end:%H:%M}"
