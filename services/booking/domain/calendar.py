"""Store-local time math, DST-correct: local wall times -> UTC instants and back."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def minutes(hhmm: str) -> int:
    return int(hhmm[:2]) * 60 + int(hhmm[3:5])


@lru_cache(maxsize=65536)
def local_instant(date: dt.date, minute_of_day: int, tz: str) -> int | None:
    """UTC epoch seconds of a local wall time, or None if that time does not exist (the
    spring-forward gap). Ambiguous autumn times resolve to the first occurrence."""
    naive = dt.datetime.combine(date, dt.time()) + dt.timedelta(minutes=minute_of_day)
    aware = naive.replace(tzinfo=zone(tz))
    if aware.astimezone(dt.UTC).astimezone(zone(tz)).replace(tzinfo=None) != naive:
        return None
    return int(aware.timestamp())


def local_instants(date: dt.date, minute_of_day: int, tz: str) -> tuple[int, ...]:
    """Every UTC epoch second a local wall time names: none in the spring-forward gap, two in
    the hour repeated in autumn (its first and its second run), else one."""
    first = local_instant(date, minute_of_day, tz)
    if first is None:
        return ()
    naive = dt.datetime.combine(date, dt.time()) + dt.timedelta(minutes=minute_of_day)
    second = int(naive.replace(tzinfo=zone(tz), fold=1).timestamp())
    return (first,) if second == first else (first, second)


@lru_cache(maxsize=65536)  # every decision and view asks again for the same shifts and hours
def local_interval(date: dt.date, start: str, end: str, tz: str) -> tuple[int, int] | None:
    """[start, end) of local wall times as UTC epoch seconds (elapsed time, so a shift
    across a DST change is an hour shorter or longer, as it really is)."""
    a = nearest_existing(date, minutes(start), tz)
    b = nearest_existing(date, minutes(end), tz)
    return (a, b) if a < b else None


def nearest_existing(date: dt.date, minute_of_day: int, tz: str) -> int:
    """A local wall time as UTC epoch seconds; one in the spring gap moves to the first valid
    minute after it, one in the repeated autumn hour is its first run."""
    for shift in range(0, 121):
        instant = local_instant(date, minute_of_day + shift, tz)
        if instant is not None:
            return instant
    raise ValueError(f"no valid local time near {date} {minute_of_day} in {tz}")


def to_local(epoch: int, tz: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, zone(tz))


def local_date(epoch: int, tz: str) -> dt.date:
    return to_local(epoch, tz).date()


def weekday_key(date: dt.date) -> str:
    return WEEKDAYS[date.weekday()]
