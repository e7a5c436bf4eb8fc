"""The store directory the pages show (names, address, position, exam types with preparation
notes, optometrists' names), folded from `roster.events.v1`. Pure: events in, state out (time
comes from the injected clock); the live adapter feeds it from Kafka."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from optisync_common.clock import Clock, SystemClock
from schemas.events.base import EventPayload
from schemas.events.roster import (
    ExamTypeDefined,
    OptometristJoined,
    OptometristLeft,
    StoreRegistered,
)


@dataclass
class ExamTypeEntry:
    code: str
    name: str
    duration_minutes: int
    active: bool
    preparation_notes: str | None


@dataclass
class StoreEntry:
    store_id: str
    name: str = ""
    timezone: str | None = None
    locale: str = "en"
    address: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    exam_types: dict[str, ExamTypeEntry] = field(default_factory=dict)
    staff: dict[str, str] = field(default_factory=dict)  # id -> name, departures included
    # id -> first store-local date not worked (OptometristLeft is announced ahead)
    departures: dict[str, dt.date] = field(default_factory=dict)
    clock: Clock = field(default_factory=SystemClock, repr=False, compare=False)

    @property
    def optometrists(self) -> dict[str, str]:
        """Id -> name of those working here today (store-local): a departure hides them from
        its effective date on, not from its announcement."""
        today = self.clock.now().astimezone(ZoneInfo(self.timezone or "UTC")).date()
        return {
            opt: name
            for opt, name in self.staff.items()
            if opt not in self.departures or today < self.departures[opt]
        }

    def public(self) -> dict[str, Any]:
        return {
            "store_id": self.store_id,
            "name": self.name or self.store_id,
            "timezone": self.timezone,
            "locale": self.locale,
            "address": self.address,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "exam_types": [
                {
                    "code": e.code,
                    "name": e.name,
                    "duration_minutes": e.duration_minutes,
                    "preparation_notes": e.preparation_notes,
                }
                for e in sorted(self.exam_types.values(), key=lambda e: e.name)
                if e.active
            ],
        }


class StoreDirectory:
    def __init__(self, clock: Clock | None = None) -> None:
        self.stores: dict[str, StoreEntry] = {}
        self.clock = clock or SystemClock()

    def _entry(self, store_id: str) -> StoreEntry:
        return self.stores.setdefault(store_id, StoreEntry(store_id, clock=self.clock))

    def apply(self, store_id: str | None, payload: EventPayload) -> None:
        if store_id is None:
            return
        if isinstance(payload, StoreRegistered):
            entry = self._entry(payload.store_id)
            entry.name = payload.name
            entry.timezone = payload.timezone
            entry.locale = payload.locale
            entry.address = payload.address
            entry.latitude = payload.latitude
            entry.longitude = payload.longitude
        elif isinstance(payload, ExamTypeDefined):
            entry = self._entry(store_id)
            entry.exam_types[payload.code] = ExamTypeEntry(
                payload.code,
                payload.name,
                payload.duration_minutes,
                payload.active,
                payload.preparation_notes,
            )
        elif isinstance(payload, OptometristJoined):
            entry = self._entry(store_id)
            entry.staff[payload.optometrist_id] = payload.name
            entry.departures.pop(payload.optometrist_id, None)  # as the processor: joined anew
        elif isinstance(payload, OptometristLeft) and store_id in self.stores:
            self.stores[store_id].departures[payload.optometrist_id] = payload.effective_date

    def get(self, store_id: str) -> StoreEntry | None:
        entry = self.stores.get(store_id)
        return entry if entry is not None and entry.timezone is not None else None

    def listing(
        self, query: str = "", near: tuple[float, float] | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Registered stores matching `query` (name, address or id, case-insensitive), nearest
        first when a position is given (stores without one last), else by name."""
        needle = query.strip().casefold()
        found = [
            s
            for s in self.stores.values()
            if s.timezone is not None
            and (
                not needle
                or needle in s.name.casefold()
                or needle in (s.address or "").casefold()
                or needle in s.store_id.casefold()
            )
        ]
        rows = []
        for store in found:
            row = store.public()
            distance = (
                distance_km(near, (store.latitude, store.longitude))
                if near is not None and store.latitude is not None and store.longitude is not None
                else None
            )
            row["distance_km"] = None if distance is None else round(distance, 1)
            rows.append(row)
        rows.sort(
            key=lambda r: (
                r["distance_km"] is None,
                r["distance_km"] or 0.0,
                r["name"].casefold(),
            )
        )
        return rows[:limit]


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance (haversine) between two (lat, lon) points."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(math.sqrt(h))
