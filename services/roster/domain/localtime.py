"""Store-local wall-clock times -> UTC instants, DST-correct.

A local time that does not exist (the spring-forward gap, e.g. 02:30 in Europe/Berlin on
2026-03-29) is refused rather than silently shifted; an ambiguous one (the autumn overlap)
means its first occurrence (fold=0), as a wall clock read that morning would.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Interval = tuple[datetime, datetime]
"""A half-open ``[start, end)`` pair of aware UTC instants."""


class NonexistentLocalTime(ValueError):
    pass


def zone(name: str) -> ZoneInfo:
    """The IANA zone, or ValueError for an unknown name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {name!r}") from exc


def to_utc(day: date, wall: time, timezone: str) -> datetime:
    local = datetime.combine(day, wall, tzinfo=zone(timezone))
    instant = local.astimezone(UTC)
    if instant.astimezone(local.tzinfo).replace(tzinfo=None) != local.replace(tzinfo=None):
        raise NonexistentLocalTime(f"{day} {wall:%H:%M} does not exist in {timezone} (DST gap)")
    return instant


def utc_interval(day: date, start: time, end: time, timezone: str) -> Interval:
    return to_utc(day, start, timezone), to_utc(day, end, timezone)


def local_hhmm(instant: datetime, timezone: str) -> str:
    return instant.astimezone(zone(timezone)).strftime("%H:%M")


def local_iso(instant: datetime, timezone: str) -> str:
    return instant.astimezone(zone(timezone)).isoformat()


def overlaps(a: Interval, b: Interval) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def subtract(intervals: list[Interval], holes: list[Interval]) -> list[Interval]:
    """``intervals`` minus every hole, sorted; empty pieces are dropped."""
    result = sorted(intervals)
    for hole_start, hole_end in sorted(holes):
        pieces: list[Interval] = []
        for start, end in result:
            if hole_end <= start or end <= hole_start:
                pieces.append((start, end))
                continue
            if start < hole_start:
                pieces.append((start, hole_start))
            if hole_end < end:
                pieces.append((hole_end, end))
        result = pieces
    return result
