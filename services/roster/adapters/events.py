"""Roster domain objects -> `roster.events.v1` payloads (the wire contract lives in schemas/)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

from schemas.events.base import EventPayload
from schemas.events.roster import (
    ExamTypeDefined,
    LeaveGranted,
    LeaveKind,
    LocalInterval,
    OpeningInterval,
    OptometristJoined,
    OptometristLeft,
    ShiftCancelled,
    ShiftChanged,
    ShiftPublished,
    StoreHoursChanged,
    StoreRegistered,
    TrainingScheduled,
)
from services.roster.domain.localtime import utc_interval
from services.roster.domain.model import (
    Chain,
    ExamType,
    Leave,
    Optometrist,
    Shift,
    Store,
    Training,
)


def _hhmm(t: object) -> str:
    return format(t, "%H:%M")


def _opening(store: Store) -> dict[str, list[OpeningInterval]]:
    return {
        day: [OpeningInterval(open=_hhmm(r.start), close=_hhmm(r.end)) for r in ranges]
        for day, ranges in store.opening_hours.items()
    }


def store_registered(store: Store) -> StoreRegistered:
    return StoreRegistered(
        store_id=store.store_id,
        name=store.name,
        region=store.region,
        timezone=store.timezone,
        opening_hours=_opening(store),
        slot_minutes=store.slot_minutes,
        locale=store.locale,
        address=store.address,
        latitude=store.latitude,
        longitude=store.longitude,
    )


def store_hours_changed(store: Store) -> StoreHoursChanged:
    return StoreHoursChanged(
        store_id=store.store_id,
        opening_hours=_opening(store),
        slot_minutes=store.slot_minutes,
    )


def exam_type_defined(exam: ExamType) -> ExamTypeDefined:
    return ExamTypeDefined(
        code=exam.code,
        name=exam.name,
        duration_minutes=exam.duration_minutes,
        required_skill=exam.required_skill,
        preparation_notes=exam.preparation_notes,
    )


def optometrist_joined(opt: Optometrist) -> OptometristJoined:
    return OptometristJoined(
        optometrist_id=opt.optometrist_id,
        name=opt.name,
        skills=sorted(opt.skills),
        home_store_id=opt.home_store_id,
        store_ids=list(opt.store_ids),
    )


def optometrist_left(optometrist_id: str, effective_date: date) -> OptometristLeft:
    return OptometristLeft(optometrist_id=optometrist_id, effective_date=effective_date)


def shift_published(
    shift: Shift, timezone: str, cls: type[ShiftPublished] = ShiftPublished
) -> ShiftPublished:
    """ShiftPublished (or ShiftChanged) with the store's zone and the UTC instants."""
    start_utc, end_utc = utc_interval(shift.day, shift.hours.start, shift.hours.end, timezone)
    return cls(
        shift_id=shift.shift_id,
        optometrist_id=shift.optometrist_id,
        store_id=shift.store_id,
        date=shift.day,
        start=_hhmm(shift.hours.start),
        end=_hhmm(shift.hours.end),
        breaks=[LocalInterval(start=_hhmm(b.start), end=_hhmm(b.end)) for b in shift.breaks],
        timezone=timezone,
        start_utc=start_utc,
        end_utc=end_utc,
    )


def shift_changed(shift: Shift, timezone: str) -> ShiftPublished:
    return shift_published(shift, timezone, ShiftChanged)


def shift_cancelled(shift: Shift) -> ShiftCancelled:
    return ShiftCancelled(
        shift_id=shift.shift_id,
        optometrist_id=shift.optometrist_id,
        store_id=shift.store_id,
        date=shift.day,
    )


def leave_granted(leave: Leave) -> LeaveGranted:
    return LeaveGranted(
        leave_id=leave.leave_id,
        optometrist_id=leave.optometrist_id,
        start_date=leave.start_date,
        end_date=leave.end_date,
        kind=LeaveKind(leave.kind),
    )


def training_scheduled(training: Training) -> TrainingScheduled:
    start_utc, end_utc = utc_interval(
        training.day, training.hours.start, training.hours.end, training.timezone
    )
    return TrainingScheduled(
        training_id=training.training_id,
        optometrist_id=training.optometrist_id,
        date=training.day,
        start=_hhmm(training.hours.start),
        end=_hhmm(training.hours.end),
        timezone=training.timezone,
        start_utc=start_utc,
        end_utc=end_utc,
    )


def chain_events(chain: Chain) -> Iterator[tuple[str, str, EventPayload]]:
    """(store_id, stable id, payload) in dependency order; per-store so each store's
    partition carries everything its processor needs."""
    for store in chain.stores:
        yield store.store_id, f"store:{store.store_id}", store_registered(store)
        for exam in chain.exam_types:
            yield store.store_id, f"exam:{store.store_id}:{exam.code}", exam_type_defined(exam)
    for opt in chain.optometrists:
        for store_id in opt.store_ids:
            yield store_id, f"opt:{store_id}:{opt.optometrist_id}", optometrist_joined(opt)
    zones = {store.store_id: store.timezone for store in chain.stores}
    for shift in chain.shifts:
        yield (
            shift.store_id,
            f"shift:{shift.shift_id}",
            shift_published(shift, zones[shift.store_id]),
        )
