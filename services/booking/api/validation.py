"""Request checks made before a command is produced (pure: no I/O, time passed in).

The processor decides again with its own state; these checks only turn obviously bad requests
into a precise 4xx at once instead of a round trip through Kafka. Wall-clock rules (grid,
opening hours) are evaluated in the store's IANA zone; durations are absolute, so an exam that
crosses a DST change ends at the right wall time.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from optisync_common.problems import ProblemError
from services.booking.adapters.views import ExamTypeInfo, StoreCatalog
from services.booking.domain.decisions import fits_opening


def exam_type_of(catalog: StoreCatalog, exam_type: str) -> ExamTypeInfo:
    info = catalog.exam_types.get(exam_type)
    if info is None or not info.active:
        raise ProblemError(422, "unknown_exam_type", f"the store offers no exam type {exam_type!r}")
    return info


def check_slot(
    catalog: StoreCatalog, exam: ExamTypeInfo, slot_start: dt.datetime, now: dt.datetime
) -> dt.datetime:
    """Raise a 422 ProblemError unless `exam` may start at `slot_start`; return the UTC start."""
    if slot_start.tzinfo is None:
        raise ProblemError(422, "naive_datetime", "slot_start needs a UTC offset")
    start = slot_start.astimezone(dt.UTC)
    if start <= now:
        raise ProblemError(422, "in_past", f"slot_start {start.isoformat()} is not in the future")
    assert catalog.timezone is not None
    tz = ZoneInfo(catalog.timezone)
    local = start.astimezone(tz)
    intervals, slot_minutes = catalog.hours_on(local.date())
    minutes = local.hour * 60 + local.minute
    if local.second or local.microsecond or minutes % slot_minutes:
        raise ProblemError(
            422,
            "not_on_grid",
            f"{local.strftime('%H:%M:%S')} local is not on the store's {slot_minutes}-minute grid",
            slot_minutes=slot_minutes,
        )
    first, last = int(start.timestamp()), int(start.timestamp()) + exam.duration_minutes * 60
    hours = tuple((i.open, i.close) for i in intervals)
    if fits_opening(local.date(), catalog.timezone, hours, first, last):
        return start
    hours_text = ", ".join(f"{i.open}-{i.close}" for i in intervals) or "closed"
    raise ProblemError(
        422,
        "outside_opening_hours",
        f"a {exam.duration_minutes}-minute exam from {local.strftime('%H:%M')} does not fit the "
        f"opening hours of {local.date().isoformat()} ({hours_text})",
    )
