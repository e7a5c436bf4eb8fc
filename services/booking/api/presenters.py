"""Stored shapes -> HTTP bodies: booking documents, availability views, rejections."""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from schemas.events.base import RejectionReason
from services.booking.adapters.bookings import Document
from services.booking.adapters.replies import Outcome
from services.booking.api.models import Booking, Offer, WaitlistEntry

# Processor reasons whose HTTP code reads better under another name (DESIGN.md §8).
_CODES = {RejectionReason.OUTSIDE_HOURS: "outside_opening_hours"}
_NOT_FOUND = {
    RejectionReason.UNKNOWN_STORE,
    RejectionReason.UNKNOWN_BOOKING,
    RejectionReason.UNKNOWN_OFFER,
}
_CONFLICT = {
    RejectionReason.SLOT_TAKEN,
    RejectionReason.NO_SHIFT,
    RejectionReason.NO_SKILL,
    RejectionReason.HELD,
    RejectionReason.INVALID_TRANSITION,
    RejectionReason.OFFER_TAKEN,
    RejectionReason.OFFER_EXPIRED,
    RejectionReason.DUPLICATE,
    RejectionReason.WAITLIST_FULL,
}


def utc_iso(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def booking_from_doc(doc: Document) -> Booking:
    tz = ZoneInfo(doc["timezone"])
    return Booking.model_validate(
        {
            **doc,
            "booking_id": doc["_id"],
            "local_start": doc["slot_start"].astimezone(tz),
            "local_end": doc["slot_end"].astimezone(tz),
        }
    )


def booking_outcome(doc: Document, status: int) -> Outcome:
    headers = (("location", f"/v1/bookings/{doc['_id']}"),) if status == 201 else ()
    return Outcome(status, booking_from_doc(doc).model_dump_json().encode(), headers=headers)


def rejection_outcome(
    reason: RejectionReason,
    detail: str,
    timezone: str | None,
    alternatives: Sequence[dt.datetime] = (),
    **extra: Any,
) -> Outcome:
    """A processor rejection as problem details; alternatives in UTC and store-local."""
    status = (
        404 if reason in _NOT_FOUND
        else 409 if reason in _CONFLICT
        else 500 if reason is RejectionReason.INTERNAL_ERROR  # the processor's own failure
        else 422
    )  # fmt: skip
    if alternatives:
        tz = ZoneInfo(timezone) if timezone else dt.UTC
        extra["alternatives"] = [
            {"start": a.astimezone(tz).isoformat(), "start_utc": utc_iso(a)} for a in alternatives
        ]
    code = _CODES.get(reason, reason.value)
    return Outcome.problem(status, code, detail or code.replace("_", " "), **extra)


def render_availability(raw: bytes, exam_type: str, now: float) -> bytes | None:
    """The `GET .../availability` body for a stored view, or None when the view has no such
    exam type. Starts at or before `now` (Unix seconds) are left out: the processor computed
    the view when the day last changed, and would refuse them (`in_past`). Both renderings
    are cached, so the hot path is one Redis GET, dict lookups and a bisect."""
    rendering = _rendering(raw, exam_type)
    if rendering is None:
        return None
    past = bisect_right(rendering.starts, now)
    return rendering.body if past == 0 else _upcoming(raw, exam_type, past)


@dataclass(frozen=True, eq=False, slots=True)
class _Rendering:
    body: bytes  # every slot of the view
    head: dict[str, Any]  # the body with `slots` left empty (in place: same field order)
    slots: tuple[orjson.Fragment, ...]  # each slot's JSON: a cut re-encodes only the head
    starts: tuple[float, ...]  # each slot's UTC instant (Unix seconds), ascending


@lru_cache(maxsize=4096)
def _rendering(raw: bytes, exam_type: str) -> _Rendering | None:
    """Cached by the view's bytes: between two changes of a store-day every read renders
    the same view."""
    view = orjson.loads(raw)
    slots = view["exam_types"].get(exam_type)
    if slots is None:
        return None
    tz = ZoneInfo(view["timezone"])
    day = dt.date.fromisoformat(view["local_date"])
    starts: list[str] = slots["free_starts"]
    capacity: list[int] = slots.get("capacity") or [1] * len(starts)  # 1.0 views: unknown
    folds = _folds(starts, slots.get("second_run"))
    rendered, instants = [], []
    for hhmm, free, fold in zip(starts, capacity, folds, strict=True):
        wall = dt.time(int(hhmm[:2]), int(hhmm[3:]), fold=fold)
        local = dt.datetime.combine(day, wall, tzinfo=tz)
        instants.append(local.timestamp())
        slot = {
            "local_time": hhmm,
            "start": local.isoformat(),
            "start_utc": utc_iso(local),
            "free_count": free,
        }
        rendered.append(orjson.Fragment(orjson.dumps(slot)))
    head = {
        "store_id": view["store_id"],
        "date": view["local_date"],
        "timezone": view["timezone"],
        "exam_type": exam_type,
        "duration_minutes": slots["duration_minutes"],
        "slots": [],
        "seq": view["seq"],
    }
    body = orjson.dumps({**head, "slots": rendered})
    return _Rendering(body, head, tuple(rendered), tuple(instants))


def _folds(starts: list[str], second_run: list[int] | None) -> list[int]:
    """Each start's fold: 1 in the second run of a local hour the clocks repeat. A view since
    1.2 names those starts (`second_run`); one before infers them: starts come in time order,
    so a wall time lower than the one before means the clocks went back. That misses a second
    run whose first run has no free start left, hence the field. An empty `second_run` may be
    an older view re-encoded by a newer projector: inferring is right for both."""
    if second_run:
        marked = set(second_run)
        return [int(i in marked) for i in range(len(starts))]
    folds, fold, previous = [], 0, ""
    for hhmm in starts:
        fold |= hhmm < previous
        previous = hhmm
        folds.append(fold)
    return folds


@lru_cache(maxsize=1024)
def _upcoming(raw: bytes, exam_type: str, past: int) -> bytes:
    """The body without the view's first `past` slots: on a store's today, one rendering per
    slot boundary passed, not per read."""
    rendering = _rendering(raw, exam_type)
    assert rendering is not None  # the caller has just rendered it
    return orjson.dumps({**rendering.head, "slots": rendering.slots[past:]})


def empty_availability(
    store_id: str, day: dt.date, timezone: str, exam_type: str, duration: int | None
) -> bytes:
    return orjson.dumps(
        {
            "store_id": store_id,
            "date": day.isoformat(),
            "timezone": timezone,
            "exam_type": exam_type,
            "duration_minutes": duration,
            "slots": [],
            "seq": None,
        }
    )


def offer_from_doc(doc: Document, token: str | None = None) -> Offer:
    """An offer from its `offers` document, or (with `token`) from an entry's `offers` map."""
    return Offer.model_validate({**doc, "offer_token": token or doc["_id"]})


def entry_from_doc(doc: Document) -> WaitlistEntry:
    offers = sorted(doc.get("offers", {}).items(), key=lambda item: item[1]["offered_at"])
    return WaitlistEntry.model_validate(
        {
            **doc,
            "waitlist_entry_id": doc["_id"],
            "offers": [
                offer_from_doc({**o, "waitlist_entry_id": doc["_id"]}, t) for t, o in offers
            ],
        }
    )
