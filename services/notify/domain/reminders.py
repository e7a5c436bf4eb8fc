"""When reminders are due, in store-local time, and when they stop being useful."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

MINUTES_PER_DAY = 24 * 60


def due_time(slot_start: dt.datetime, offset_min: int, timezone: str) -> dt.datetime:
    """`offset_min` before the visit. Whole days count in store-local wall time, so "24 h
    before" a 10:00 visit is 10:00 the day before even across a DST change."""
    zone = ZoneInfo(timezone)
    local = slot_start.astimezone(zone)
    days, minutes = divmod(offset_min, MINUTES_PER_DAY)
    wall = local.replace(tzinfo=None) - dt.timedelta(days=days)
    due = wall.replace(tzinfo=zone) - dt.timedelta(minutes=minutes)
    return due.astimezone(dt.UTC)


def schedule(
    slot_start: dt.datetime,
    offsets_min: tuple[int, ...],
    timezone: str,
    *,
    now: dt.datetime,
    min_notice: dt.timedelta,
) -> list[tuple[int, dt.datetime, dt.datetime]]:
    """(offset, due, stale_after) per reminder still ahead.

    A reminder is stale once the next (closer) reminder is due or the visit is nearer than
    `min_notice`: sending it late would only duplicate the next one.
    """
    latest_useful = slot_start - min_notice
    dues = sorted(
        ((offset, due_time(slot_start, offset, timezone)) for offset in set(offsets_min)),
        key=lambda pair: pair[1],
    )
    planned = []
    for i, (offset, due) in enumerate(dues):
        next_due = dues[i + 1][1] if i + 1 < len(dues) else latest_useful
        stale_after = min(next_due, latest_useful)
        # Already due when planned (booked late): the confirmation itself is the reminder.
        if due >= stale_after or now >= due:
            continue
        planned.append((offset, due, stale_after))
    return planned
