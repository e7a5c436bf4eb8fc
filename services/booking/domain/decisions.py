"""The availability processor's decisions, as pure functions of one store's state.

Commands for a store are applied strictly in order by one processor, so each decision sees
the result of every earlier one: that, not locking, is why a slot is never given twice.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import accumulate

from services.booking.domain.calendar import (
    local_instants,
    local_interval,
    minutes,
    nearest_existing,
    to_local,
    weekday_key,
)
from services.booking.domain.model import (
    Booking,
    BookingStatus,
    Busy,
    Day,
    ExamSpec,
    Reason,
    StoreConfig,
)

Interval = tuple[int, int]
MAX_ALTERNATIVES = 3


@dataclass(frozen=True)
class BookRequest:
    booking_id: str
    customer_ref: str
    exam_type: str
    start: int  # UTC epoch seconds
    idempotency_key: str
    channel: str
    optometrist_id: str | None = None


@dataclass(frozen=True)
class Accepted:
    booking: Booking


@dataclass(frozen=True)
class Rejected:
    reason: Reason
    detail: str
    alternatives: tuple[int, ...] = ()
    existing_booking_id: str | None = None


@dataclass(frozen=True)
class Cancelled:
    booking: Booking
    late: bool
    minutes_before_start: int


@dataclass(frozen=True)
class Rescheduled:
    old: Booking
    new: Booking


# --------------------------------------------------------------------------- time windows


def opening_windows(cfg: StoreConfig, date: dt.date) -> list[Interval]:
    return list(_opening(date, cfg.timezone, _hours(cfg, date)))


def fits_opening(
    date: dt.date, tz: str, hours: tuple[tuple[str, str], ...], start: int, end: int
) -> bool:
    """Whether [start, end) lies within the day's opening hours, intervals that meet joined:
    the one reading of opening hours for the processor and the API's early checks alike."""
    return _contains(_opening(date, tz, hours), start, end)


@lru_cache(maxsize=4096)
def _opening(date: dt.date, tz: str, hours: tuple[tuple[str, str], ...]) -> tuple[Interval, ...]:
    windows = (local_interval(date, open_, close, tz) for open_, close in hours)
    return tuple(_joined(w for w in windows if w))


def _joined(windows: Iterable[Interval]) -> list[Interval]:
    """The windows sorted, with those that meet or overlap made one: an exam may run across
    the join of 09:00-13:00 and 13:00-17:00 (two shifts, or two opening intervals)."""
    result: list[Interval] = []
    for start, end in sorted(windows):
        if result and start <= result[-1][1]:
            if end > result[-1][1]:
                result[-1] = (result[-1][0], end)
        else:
            result.append((start, end))
    return result


def _subtract(windows: Iterable[Interval], holes: Iterable[Interval]) -> list[Interval]:
    """What of each window no hole covers, in the windows' order: one walk along the sorted
    holes per window (cutting every piece by every hole in turn was quadratic in a full day's
    bookings)."""
    pending = sorted(holes)
    result: list[Interval] = []
    for start, end in sorted(windows):
        cursor = start
        for h_start, h_end in pending:
            if h_start >= end:
                break
            if h_end <= cursor:
                continue
            if h_start > cursor:
                result.append((cursor, h_start))
            cursor = h_end
            if cursor >= end:
                break
        if cursor < end:
            result.append((cursor, end))
    return result


def working_windows(cfg: StoreConfig, day: Day, optometrist_id: str) -> list[Interval]:
    """When the optometrist is on shift (breaks and time off removed), clipped to opening hours."""
    departure = cfg.departures.get(optometrist_id)
    if departure is not None and day.date >= departure:
        return []
    shifts = tuple(
        (s.date, s.start, s.end, s.breaks)
        for s in day.shifts.values()
        if s.optometrist_id == optometrist_id
    )
    if not shifts:
        return []
    away = tuple(sorted((s, e) for who, s, e in day.absences.values() if who == optometrist_id))
    key = (day.date, cfg.timezone, _hours(cfg, day.date), shifts, away)
    windows = _WORKING.get(key)
    if windows is None:
        windows = _WORKING[key] = _working(*key)
        if len(_WORKING) > WORKING_CACHE_SIZE:
            _WORKING.popitem(last=False)  # the least recently used
    else:
        _WORKING.move_to_end(key)
    return list(windows)


# Working windows by everything they depend on: every decision and view of a day asks again for
# the same shifts, and they change only with the roster. Keys and values hold only strings,
# numbers, dates and tuples of them, so the collector stops tracking them at its first pass.
_WORKING: OrderedDict[tuple[object, ...], tuple[Interval, ...]] = OrderedDict()
WORKING_CACHE_SIZE = 1 << 15


def _hours(cfg: StoreConfig, date: dt.date) -> tuple[tuple[str, str], ...]:
    if date in cfg.closed_dates:
        return ()
    hours, _ = cfg.hours_on(date)
    return tuple(hours.get(weekday_key(date), ()))


def slot_minutes_on(cfg: StoreConfig, date: dt.date) -> int:
    return cfg.hours_on(date)[1]


def _working(
    date: dt.date,
    tz: str,
    hours: tuple[tuple[str, str], ...],
    shifts: tuple[tuple[dt.date, str, str, tuple[tuple[str, str], ...]], ...],
    away: tuple[Interval, ...],
) -> tuple[Interval, ...]:
    windows: list[Interval] = []
    for shift_date, start, end, shift_breaks in shifts:
        interval = local_interval(shift_date, start, end, tz)
        if interval is None:
            continue
        breaks = [
            b for s, e in shift_breaks if (b := local_interval(shift_date, s, e, tz)) is not None
        ]
        windows.extend(_subtract([interval], breaks))
    windows = _subtract(windows, away) if away else sorted(windows)
    opening = _opening(date, tz, hours)
    return tuple(
        _joined(
            (max(s, os), min(e, oe)) for s, e in windows for os, oe in opening if s < oe and os < e
        )
    )


def free_windows(
    cfg: StoreConfig, day: Day, optometrist_id: str, ignore_booking: str | None = None
) -> list[Interval]:
    return _free(working_windows(cfg, day, optometrist_id), day, optometrist_id, ignore_booking)


def _free(
    working: list[Interval], day: Day, optometrist_id: str, ignore_booking: str | None
) -> list[Interval]:
    busy = [
        (b.start, b.end) for b in day.busy.get(optometrist_id, ()) if b.booking_id != ignore_booking
    ]
    return _subtract(working, busy)


def _contains(windows: Sequence[Interval], start: int, end: int) -> bool:
    return any(s <= start and end <= e for s, e in windows)


# --------------------------------------------------------------------------- slot checks


def _exam(cfg: StoreConfig, code: str) -> ExamSpec | None:
    spec = cfg.exam_types.get(code)
    return spec if spec is not None and spec.active else None


def qualified(cfg: StoreConfig, exam: ExamSpec) -> list[str]:
    return sorted(o for o, skills in cfg.optometrists.items() if exam.required_skill in skills)


def check_slot(cfg: StoreConfig, exam_code: str, start: int, now: int) -> Rejected | None:
    """Everything about a requested slot that does not depend on who is busy."""
    exam = _exam(cfg, exam_code)
    if exam is None:
        return Rejected(Reason.UNKNOWN_EXAM_TYPE, f"no exam type {exam_code!r} at this store")
    if start <= now:
        return Rejected(Reason.IN_PAST, "the slot has already started")
    local = to_local(start, cfg.timezone)
    slot_minutes = slot_minutes_on(cfg, local.date())
    if local.second or (local.hour * 60 + local.minute) % slot_minutes:
        return Rejected(
            Reason.NOT_ON_GRID, f"slots start every {slot_minutes} minutes in store time"
        )
    end = start + exam.duration_minutes * 60
    if not _contains(opening_windows(cfg, local.date()), start, end):
        return Rejected(Reason.OUTSIDE_HOURS, "the exam does not fit inside opening hours")
    return None


def candidates(
    cfg: StoreConfig,
    day: Day,
    exam: ExamSpec,
    start: int,
    requested: str | None = None,
    ignore_booking: str | None = None,
) -> list[str] | Rejected:
    """Optometrists who could take [start, start+duration): least loaded first."""
    end = start + exam.duration_minutes * 60
    if requested is not None:
        skills = cfg.optometrists.get(requested)
        if skills is None or exam.required_skill not in skills:
            return Rejected(
                Reason.NO_SKILL, f"optometrist {requested!r} does not do {exam.code} here"
            )
        pool = [requested]
    else:
        pool = qualified(cfg, exam)
        if not pool:
            return Rejected(Reason.NO_SKILL, f"nobody at this store does {exam.code}")
    working = {o: working_windows(cfg, day, o) for o in pool}
    on_shift = [o for o in pool if _contains(working[o], start, end)]
    if not on_shift:
        return Rejected(Reason.NO_SHIFT, "no qualified optometrist works at that time")
    free = [o for o in on_shift if _contains(_free(working[o], day, o, ignore_booking), start, end)]
    return sorted(free, key=lambda o: (day.load(o), o))


# --------------------------------------------------------------------------- decisions


def find_duplicate(day: Day, customer_ref: str, exam_type: str, start: int) -> str | None:
    """The same customer asking for the same exam and slot again (e.g. from another channel)."""
    for entries in day.busy.values():
        for b in entries:
            if b.customer_ref == customer_ref and b.exam_type == exam_type and b.start == start:
                return b.booking_id
    return None


def decide_booking(cfg: StoreConfig, day: Day, req: BookRequest, now: int) -> Accepted | Rejected:
    """Accept (and occupy the interval in `day`) or reject with a reason. Mutates `day` only
    when accepting."""
    refused = check_slot(cfg, req.exam_type, req.start, now)
    if refused:
        return refused
    existing = find_duplicate(day, req.customer_ref, req.exam_type, req.start)
    if existing is not None:
        return Rejected(Reason.DUPLICATE, "already booked", existing_booking_id=existing)
    exam = cfg.exam_types[req.exam_type]
    who = candidates(cfg, day, exam, req.start, req.optometrist_id)
    if isinstance(who, Rejected):
        return replace(who, alternatives=alternatives(cfg, day, exam, req.start, not_before=now))
    if not who:
        return Rejected(
            Reason.SLOT_TAKEN,
            "that slot was just taken",
            alternatives(cfg, day, exam, req.start, req.optometrist_id, not_before=now),
        )
    optometrist = who[0]
    booking = Booking(
        booking_id=req.booking_id,
        store_id=cfg.store_id,
        customer_ref=req.customer_ref,
        exam_type=exam.code,
        optometrist_id=optometrist,
        start=req.start,
        end=req.start + exam.duration_minutes * 60,
        status=BookingStatus.CONFIRMED,
        idempotency_key=req.idempotency_key,
        channel=req.channel,
        date=day.date,
    )
    day.occupy(optometrist, _busy(booking))
    day.seq += 1
    return Accepted(booking)


def _busy(b: Booking) -> Busy:
    return Busy(b.start, b.end, b.booking_id, b.customer_ref, b.exam_type)


def has_ended(booking: Booking, now: int) -> bool:
    """Past the exam's end a booking was attended or missed: cancelling or moving it then
    would turn a no-show into a cancellation. Between start and end a late customer may still
    cancel (BookingCancelled.minutes_before_start is then negative)."""
    return now >= booking.end


def _ended(instead_of: str) -> Rejected:
    detail = f"the exam has already ended: mark it no-show or complete instead of {instead_of}"
    return Rejected(Reason.INVALID_TRANSITION, detail)


def cancel(
    cfg: StoreConfig, day: Day, booking: Booking, now: int, by_customer: bool = True
) -> Cancelled | Rejected:
    """Cancel a booking. Only a customer's cancellation can be late: the store's own is not
    the customer's short notice (and must not count in the late-cancellation rate)."""
    if not booking.can_become(BookingStatus.CANCELLED):
        return Rejected(
            Reason.INVALID_TRANSITION, f"a {booking.status} booking cannot be cancelled"
        )
    if has_ended(booking, now):
        return _ended("cancelling it")
    day.release(booking.booking_id)
    day.seq += 1
    minutes_before = (booking.start - now) // 60
    updated = replace(booking, status=BookingStatus.CANCELLED, version=booking.version + 1)
    late = by_customer and now > late_cancel_deadline(cfg, booking.start)
    return Cancelled(updated, late, int(minutes_before))


def late_cancel_deadline(cfg: StoreConfig, start: int) -> int:
    """The last moment a cancellation is on time: the store's notice counted in local wall
    time, as customers read it ("24 hours before" is the same clock time the day before, even
    when a DST change makes that 23 or 25 hours)."""
    wall = to_local(start, cfg.timezone) - dt.timedelta(minutes=cfg.late_cancel_minutes)
    return nearest_existing(wall.date(), wall.hour * 60 + wall.minute, cfg.timezone)


def move_refused(booking: Booking, now: int) -> Rejected | None:
    """Why the booking cannot be rescheduled at all, wherever to (checked before any hold or
    slot, so the answer names the booking's state)."""
    if booking.status != BookingStatus.CONFIRMED:
        return Rejected(Reason.INVALID_TRANSITION, f"a {booking.status} booking cannot move")
    if has_ended(booking, now):
        return _ended("moving it")
    return None


def reschedule(
    cfg: StoreConfig,
    old_day: Day,
    new_day: Day,
    booking: Booking,
    new_start: int,
    now: int,
    optometrist_id: str | None = None,
) -> Rescheduled | Rejected:
    """Atomic: the new interval is taken and the old one freed in one decision, or nothing
    changes. `old_day` and `new_day` may be the same object."""
    refused = move_refused(booking, now) or check_slot(cfg, booking.exam_type, new_start, now)
    if refused:
        return refused
    exam = cfg.exam_types[booking.exam_type]
    who = candidates(
        cfg, new_day, exam, new_start, optometrist_id, ignore_booking=booking.booking_id
    )
    if isinstance(who, Rejected):
        return who
    if not who:
        return Rejected(
            Reason.SLOT_TAKEN,
            "that slot was just taken",
            alternatives(
                cfg, new_day, exam, new_start, optometrist_id, not_before=now, moving=booking
            ),
        )
    # Prefer keeping the same optometrist when they are free at the new time.
    chosen = booking.optometrist_id if booking.optometrist_id in who else who[0]
    moved = replace(
        booking,
        optometrist_id=chosen,
        start=new_start,
        end=new_start + exam.duration_minutes * 60,
        date=new_day.date,
        version=booking.version + 1,
    )
    old_day.release(booking.booking_id)
    new_day.occupy(chosen, _busy(moved))
    old_day.seq += 1
    if new_day is not old_day:
        new_day.seq += 1
    return Rescheduled(booking, moved)


def transition(booking: Booking, status: BookingStatus, now: int) -> Booking | Rejected:
    """Check-in, no-show, complete (only after check-in: see TRANSITIONS). A no-show can only
    be marked once the slot has started."""
    if not booking.can_become(status):
        return Rejected(
            Reason.INVALID_TRANSITION, f"a {booking.status} booking cannot become {status}"
        )
    if status == BookingStatus.NO_SHOW and now < booking.start:
        return Rejected(Reason.INVALID_TRANSITION, "a no-show is marked after the start time")
    return replace(booking, status=status, version=booking.version + 1)


# --------------------------------------------------------------------------- availability


@lru_cache(maxsize=4096)
def _grid(
    date: dt.date, tz: str, slot_minutes: int, hours: tuple[tuple[str, str], ...]
) -> tuple[int, ...]:
    """Every local grid start inside opening hours, as UTC epoch seconds (spring gaps skipped,
    the hour repeated in autumn there twice)."""
    starts: list[int] = []
    for open_, close in hours:
        first = -(-minutes(open_) // slot_minutes) * slot_minutes
        for minute in range(first, minutes(close), slot_minutes):
            starts.extend(local_instants(date, minute, tz))
    return tuple(sorted(set(starts)))


def grid(cfg: StoreConfig, date: dt.date) -> tuple[int, ...]:
    return _grid(date, cfg.timezone, slot_minutes_on(cfg, date), _hours(cfg, date))


def free_windows_by_optometrist(cfg: StoreConfig, day: Day) -> dict[str, list[Interval]]:
    """Every optometrist's free windows of the day, for `free_starts` of several exam types."""
    return {o: free_windows(cfg, day, o) for o in cfg.optometrists}


def free_starts(
    cfg: StoreConfig,
    day: Day,
    exam_code: str,
    by_optometrist: Mapping[str, list[Interval]] | None = None,
) -> list[tuple[int, int]]:
    """(start, how many optometrists could take it) for every bookable start of the day.
    `by_optometrist`: the day's `free_windows_by_optometrist`, when already computed."""
    exam = _exam(cfg, exam_code)
    if exam is None:
        return []
    starts = grid(cfg, day.date)
    per_optometrist = (
        by_optometrist[o] if by_optometrist is not None else free_windows(cfg, day, o)
        for o in qualified(cfg, exam)
    )
    return starts_within(starts, per_optometrist, exam.duration_minutes * 60)


def starts_within(
    starts: Sequence[int], windows_per_party: Iterable[Sequence[Interval]], duration: int
) -> list[tuple[int, int]]:
    """(start, how many parties have a window holding [start, start+duration)) for the sorted
    `starts`, where it is at least one; each party's windows sorted by start. Each window
    marks the run of starts it holds (two binary searches), and one running sum over the
    runs counts them: no loop over every start per party."""
    edges = [0] * (len(starts) + 1)
    for windows in windows_per_party:
        counted_to = 0  # a party counts once per start, even if its windows overlap
        for window_start, window_end in windows:
            first = max(bisect_left(starts, window_start), counted_to)
            end = bisect_right(starts, window_end - duration)
            if first < end:
                edges[first] += 1
                edges[end] -= 1
                counted_to = end
    return [(start, n) for start, n in zip(starts, accumulate(edges), strict=False) if n]


def alternatives(
    cfg: StoreConfig,
    day: Day,
    exam: ExamSpec,
    around: int,
    optometrist_id: str | None = None,
    limit: int = MAX_ALTERNATIVES,
    not_before: int = 0,
    moving: Booking | None = None,
) -> tuple[int, ...]:
    """The free starts of the same day nearest to `around` (and after `not_before`).
    `moving`: the booking being rescheduled; its own interval counts as free, and its own
    start is no alternative."""
    ignore = moving.booking_id if moving is not None else None
    pool = qualified(cfg, exam) if optometrist_id is None else [optometrist_id]
    windows = (free_windows(cfg, day, o, ignore) for o in pool)
    starts = starts_within(grid(cfg, day.date), windows, exam.duration_minutes * 60)
    not_offered = {around} if moving is None else {around, moving.start}
    free = [s for s, _ in starts if s not in not_offered and s > not_before]
    return tuple(sorted(sorted(free, key=lambda s: (abs(s - around), s))[:limit]))


# --------------------------------------------------------------------------- roster changes


@dataclass(frozen=True)
class Reassigned:
    busy: Busy
    from_optometrist: str
    to_optometrist: str


@dataclass(frozen=True)
class Displaced:
    busy: Busy
    optometrist: str
    alternatives: tuple[int, ...]


def rehome(
    cfg: StoreConfig, day: Day, now: int, held: Sequence[tuple[str, Busy]] = ()
) -> list[Reassigned | Displaced]:
    """After a roster change: every future booking whose optometrist can no longer see the
    customer then moves to another free qualified optometrist at the same time, else it is
    displaced (with the nearest free starts as alternatives). Mutates `day`; nothing is dropped
    silently: each stranded booking yields exactly one outcome. `held` (optometrist, interval)
    is kept for others (waitlist offers): a booking moves there only when no other qualified
    optometrist is free, and it is never offered as an alternative."""
    stranded = [
        (optometrist, b)
        for optometrist, entries in day.busy.items()
        for b in entries
        if b.start > now and not _still_served(cfg, day, optometrist, b)
    ]
    for _, b in stranded:
        day.release(b.booking_id)
    unheld = with_busy(day, held)
    outcomes: list[Reassigned | Displaced] = []
    displaced: list[tuple[str, Busy]] = []
    for optometrist, b in sorted(stranded, key=lambda s: (s[1].start, s[1].booking_id)):
        # An exam type taken off the menu keeps the bookings it already has.
        exam = cfg.exam_types.get(b.exam_type)
        who = _free_at(cfg, unheld, exam, b.start) or _free_at(cfg, day, exam, b.start)
        if who:
            day.occupy(who[0], b)
            if unheld is not day:
                unheld.occupy(who[0], b)
            outcomes.append(Reassigned(b, optometrist, who[0]))
        else:
            displaced.append((optometrist, b))
    # Alternatives only once every reassignment has taken its slot: offered earlier, a slot
    # could go to a later stranded booking before the displaced customer asked for it.
    for optometrist, b in displaced:
        exam = _exam(cfg, b.exam_type)  # none to offer for an exam no longer booked
        around = alternatives(cfg, unheld, exam, b.start, not_before=now) if exam else ()
        outcomes.append(Displaced(b, optometrist, around))
    if stranded:
        day.seq += 1
    return sorted(outcomes, key=lambda o: (o.busy.start, o.busy.booking_id))


def _free_at(cfg: StoreConfig, day: Day, exam: ExamSpec | None, start: int) -> list[str]:
    who = candidates(cfg, day, exam, start) if exam is not None else []
    return who if isinstance(who, list) else []


def with_busy(day: Day, extra: Sequence[tuple[str, Busy]]) -> Day:
    """`day` with `extra` (optometrist, interval) also busy: a copy, or `day` itself when
    there is nothing to add."""
    if not extra:
        return day
    copy = day.copy()
    for optometrist, busy in extra:
        copy.occupy(optometrist, busy)
    return copy


def still_serves(
    cfg: StoreConfig, day: Day, optometrist: str, exam_type: str, start: int, end: int
) -> bool:
    """Whether the optometrist may see `exam_type` over [start, end) on `day`: skilled, inside
    opening hours and at work (busy time aside)."""
    return _still_served(cfg, day, optometrist, Busy(start, end, "", "", exam_type))


def _still_served(cfg: StoreConfig, day: Day, optometrist: str, b: Busy) -> bool:
    exam = cfg.exam_types.get(b.exam_type)
    skills = cfg.optometrists.get(optometrist)
    if exam is None or skills is None or exam.required_skill not in skills:
        return False
    if not _contains(opening_windows(cfg, day.date), b.start, b.end):
        return False
    return _contains(working_windows(cfg, day, optometrist), b.start, b.end)
