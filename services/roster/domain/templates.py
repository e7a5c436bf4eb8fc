"""Recurring weekly templates -> concrete shifts (store-local dates and wall-clock times)."""

from __future__ import annotations

from datetime import date, timedelta

from services.roster.domain.model import WEEKDAYS, Shift, WeeklyTemplate


def template_shift_id(template_id: str, day: date) -> str:
    """Stable per template and day, so expanding twice drafts the same shifts again."""
    return f"{template_id}-{day.isoformat()}"


def expand(template: WeeklyTemplate, first: date, last: date) -> list[Shift]:
    """One shift per local date in ``first..last`` (inclusive) whose weekday the template has.

    Wall-clock times are kept as written: across a DST change a 09:00-17:00 template stays
    09:00-17:00 local, so its UTC instants move by the offset change."""
    if last < first:
        raise ValueError("last must not be before first")
    shifts = []
    day = first
    while day <= last:
        pattern = template.days.get(WEEKDAYS[day.weekday()])
        if pattern is not None:
            shifts.append(
                Shift(
                    shift_id=template_shift_id(template.template_id, day),
                    optometrist_id=template.optometrist_id,
                    store_id=template.store_id,
                    day=day,
                    hours=pattern.hours,
                    breaks=pattern.breaks,
                )
            )
        day += timedelta(days=1)
    return shifts
