"""JSON codecs for the processor's table values (changelog-backed, so plain JSON types)."""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from services.booking.domain.model import (
    Booking,
    BookingStatus,
    Busy,
    Day,
    ExamSpec,
    HoursChange,
    Shift,
    StoreConfig,
)

Json = dict[str, Any]
Value = TypeVar("Value")


class Decoded(Generic[Value]):
    """Decoded table values, each valid while its table still holds the very JSON value it
    came from: a changelog table's values are replaced on change, never mutated. Decoding a
    busy store-day on every command cost about 5% of the processor's CPU."""

    def __init__(self, limit: int = 4096) -> None:
        self._entries: OrderedDict[str, tuple[Json, Value]] = OrderedDict()
        self._limit = limit

    def get(self, key: str, data: Json) -> Value | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] is not data:
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: str, data: Json, value: Value) -> None:
        self._entries[key] = (data, value)
        self._entries.move_to_end(key)
        if len(self._entries) > self._limit:
            self._entries.popitem(last=False)


class DecodedState:
    """What one task's processor decoded, kept across its batches."""

    def __init__(self) -> None:
        self.configs: Decoded[StoreConfig] = Decoded()
        self.days: Decoded[Day] = Decoded()


def config_to_json(cfg: StoreConfig) -> Json:
    return {
        "store_id": cfg.store_id,
        "timezone": cfg.timezone,
        "slot_minutes": cfg.slot_minutes,
        "opening_hours": _hours_to_json(cfg.opening_hours),
        "closed_dates": sorted(d.isoformat() for d in cfg.closed_dates),
        "region": cfg.region,
        "locale": cfg.locale,
        "exam_types": {
            c: [e.duration_minutes, e.required_skill, e.active] for c, e in cfg.exam_types.items()
        },
        "optometrists": {o: sorted(s) for o, s in cfg.optometrists.items()},
        "late_cancel_minutes": cfg.late_cancel_minutes,
        "registered": cfg.registered,
        "departures": {o: d.isoformat() for o, d in cfg.departures.items()},
        "hours_changes": [
            [c.effective_from.isoformat(), _hours_to_json(c.opening_hours), c.slot_minutes]
            for c in cfg.hours_changes
        ],
    }


def _hours_to_json(hours: dict[str, list[tuple[str, str]]]) -> Json:
    return {d: [list(i) for i in v] for d, v in hours.items()}


def _hours_from_json(data: Json) -> dict[str, list[tuple[str, str]]]:
    return {d: [(a, b) for a, b in v] for d, v in data.items()}


def config_from_json(data: Json) -> StoreConfig:
    return StoreConfig(
        store_id=data["store_id"],
        timezone=data["timezone"],
        slot_minutes=data["slot_minutes"],
        opening_hours=_hours_from_json(data["opening_hours"]),
        closed_dates={dt.date.fromisoformat(d) for d in data["closed_dates"]},
        region=data["region"],
        locale=data["locale"],
        exam_types={
            c: ExamSpec(c, dur, skill, active)
            for c, (dur, skill, active) in data["exam_types"].items()
        },
        optometrists={o: frozenset(s) for o, s in data["optometrists"].items()},
        late_cancel_minutes=data["late_cancel_minutes"],
        registered=data["registered"],
        departures={o: dt.date.fromisoformat(d) for o, d in data.get("departures", {}).items()},
        hours_changes=[
            HoursChange(dt.date.fromisoformat(date), _hours_from_json(hours), slot_minutes)
            for date, hours, slot_minutes in data.get("hours_changes", ())
        ],
    )


def day_to_json(day: Day) -> Json:
    # Tuples where JSON has arrays of strings and numbers (orjson writes them alike): the
    # collector stops tracking such a tuple at its first young collection, so a day's intervals
    # do not add to what every later middle and full collection walks (`gc.is_tracked`).
    return {
        "date": day.date.isoformat(),
        "seq": day.seq,
        "shifts": {
            sid: (s.optometrist_id, s.start, s.end, s.breaks) for sid, s in day.shifts.items()
        },
        "busy": {
            o: [(b.start, b.end, b.booking_id, b.customer_ref, b.exam_type) for b in entries]
            for o, entries in day.busy.items()
            if entries
        },
        "absences": dict(day.absences),
    }


def day_from_json(data: Json) -> Day:
    date = dt.date.fromisoformat(data["date"])
    return Day(
        date=date,
        seq=data["seq"],
        shifts={
            sid: Shift(sid, o, date, start, end, tuple((a, b) for a, b in breaks))
            for sid, (o, start, end, breaks) in data["shifts"].items()
        },
        busy={o: [Busy(*entry) for entry in entries] for o, entries in data["busy"].items()},
        absences={a: (o, s, e) for a, (o, s, e) in data.get("absences", {}).items()},
    )


def outputs_to_text(values: Sequence[str]) -> str:
    """An idempotency record's encoded outputs as one string, a JSON document per line
    (compact JSON has no raw newline): with only strings and numbers in it, the record is a dict
    the collector never tracks, however many of them a day of bookings leaves."""
    return "\n".join(values)


def outputs_from_record(stored: str | list[str]) -> list[str]:
    """The encoded outputs of an idempotency record, also of one written as a list (before
    `outputs_to_text`)."""
    if isinstance(stored, list):
        return stored
    return stored.split("\n") if stored else []


def booking_to_json(b: Booking) -> Json:
    return {
        "booking_id": b.booking_id,
        "store_id": b.store_id,
        "customer_ref": b.customer_ref,
        "exam_type": b.exam_type,
        "optometrist_id": b.optometrist_id,
        "start": b.start,
        "end": b.end,
        "status": b.status.value,
        "idempotency_key": b.idempotency_key,
        "channel": b.channel,
        "date": b.date.isoformat(),
        "version": b.version,
    }


def booking_from_json(data: Json) -> Booking:
    return Booking(
        **{
            **data,
            "status": BookingStatus(data["status"]),
            "date": dt.date.fromisoformat(data["date"]),
        }
    )
