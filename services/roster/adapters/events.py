"""Roster domain objects -> `roster.events.v1` payloads (the wire contract lives in schemas/)."""

from __future__ import annotations

from collections.abc import Iterator

from schemas.events.base import EventPayload
from schemas.events.roster import (
    ExamTypeDefined,
    LocalInterval,
    OpeningInterval,
    OptometristJoined,
    ShiftPublished,
    StoreRegistered,
)
from services.roster.domain.model import Chain, ExamType, Optometrist, Shift, Store


def _hhmm(t: object) -> str:
    return format(t, "%H:%M")


def store_registered(store: Store) -> StoreRegistered:
    return StoreRegistered(
        store_id=store.store_id,
        name=store.name,
        region=store.region,
        timezone=store.timezone,
        opening_hours={
            day: [OpeningInterval(open=_hhmm(r.start), close=_hhmm(r.end)) for r in ranges]
            for day, ranges in store.opening_hours.items()
        },
        slot_minutes=store.slot_minutes,
        locale=store.locale,
    )


def exam_type_defined(exam: ExamType) -> ExamTypeDefined:
    return ExamTypeDefined(
        code=exam.code,
        name=exam.name,
        duration_minutes=exam.duration_minutes,
        required_skill=exam.required_skill,
    )


def optometrist_joined(opt: Optometrist) -> OptometristJoined:
    return OptometristJoined(
        optometrist_id=opt.optometrist_id,
        name=opt.name,
        skills=sorted(opt.skills),
        home_store_id=opt.home_store_id,
        store_ids=list(opt.store_ids),
    )


def shift_published(shift: Shift) -> ShiftPublished:
    return ShiftPublished(
        shift_id=shift.shift_id,
        optometrist_id=shift.optometrist_id,
        store_id=shift.store_id,
        date=shift.day,
        start=_hhmm(shift.hours.start),
        end=_hhmm(shift.hours.end),
        breaks=[LocalInterval(start=_hhmm(b.start), end=_hhmm(b.end)) for b in shift.breaks],
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
    for shift in chain.shifts:
        yield shift.store_id, f"shift:{shift.shift_id}", shift_published(shift)
