"""MongoDB storage of the roster (database `optisync_roster`, owned by this service only).

Collections: stores, exam_types, optometrists, shifts (current version plus the `published`
snapshot: a shift whose current version differs from its snapshot is a pending draft), templates,
leave, training, bookings (projection of booking.events.v1 for the day view), outbox, counters.
Dates are ISO strings, so ranges compare as strings.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from optisync_common.mongo import ensure_indexes
from schemas.events.base import EventPayload
from schemas.events.roster import (
    ExamTypeDefined,
    OptometristJoined,
    ShiftPublished,
    StoreRegistered,
)
from services.roster.domain.dayview import BookingSlot
from services.roster.domain.model import (
    DayPattern,
    Leave,
    Optometrist,
    Shift,
    Store,
    TimeRange,
    Training,
    WeeklyTemplate,
)

Document = dict[str, Any]
SHIFT_FIELDS = ("optometrist_id", "store_id", "date", "start", "end", "breaks", "cancelled")


class RosterRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db

    async def ensure_indexes(self) -> None:
        await ensure_indexes(
            self.db.shifts,
            [
                IndexModel([("store_id", ASCENDING), ("date", ASCENDING)]),
                IndexModel([("optometrist_id", ASCENDING), ("date", ASCENDING)]),
            ],
        )
        await ensure_indexes(self.db.optometrists, [IndexModel([("store_ids", ASCENDING)])])
        await ensure_indexes(
            self.db.bookings, [IndexModel([("optometrist_id", ASCENDING), ("date", ASCENDING)])]
        )

    async def save(self, payload: EventPayload) -> None:
        """Upsert the document an event describes (used by the demo seed)."""
        doc = payload.model_dump(mode="json")
        if isinstance(payload, StoreRegistered):
            await self._upsert("stores", payload.store_id, {**doc, "revision": 1})
        elif isinstance(payload, ExamTypeDefined):
            await self._upsert("exam_types", payload.code, {**doc, "revision": 1})
        elif isinstance(payload, OptometristJoined):
            await self._upsert("optometrists", payload.optometrist_id, {**doc, "left_on": None})
        elif isinstance(payload, ShiftPublished):
            current = shift_doc_fields(
                Shift(
                    payload.shift_id, payload.optometrist_id, payload.store_id, payload.date,
                    TimeRange(_time(payload.start), _time(payload.end)),
                    tuple(TimeRange(_time(b.start), _time(b.end)) for b in payload.breaks),
                )
            )  # fmt: skip
            snapshot = {k: current[k] for k in SHIFT_FIELDS}
            await self._upsert(
                "shifts",
                payload.shift_id,
                {**current, "shift_id": payload.shift_id, "revision": 1, "published": snapshot},
            )
        else:
            raise TypeError(f"no roster document for {type(payload).__name__}")

    async def _upsert(self, collection: str, key: str, doc: Document) -> None:
        await self.db[collection].replace_one({"_id": key}, {"_id": key, **doc}, upsert=True)

    # ------------------------------------------------------------------ reference data

    async def list_stores(self) -> list[Document]:
        return [_public(d) async for d in self.db.stores.find().sort("_id", ASCENDING)]

    async def get_store(self, store_id: str) -> Document | None:
        doc = await self.db.stores.find_one({"_id": store_id})
        return _public(doc) if doc else None

    async def list_exam_types(self) -> list[Document]:
        return [_public(d) async for d in self.db.exam_types.find().sort("_id", ASCENDING)]

    async def get_exam_type(self, code: str) -> Document | None:
        doc = await self.db.exam_types.find_one({"_id": code})
        return _public(doc) if doc else None

    async def optometrists_at(self, store_id: str) -> list[Document]:
        cursor = self.db.optometrists.find({"store_ids": store_id})
        return [_public(d) async for d in cursor.sort("_id", ASCENDING)]

    async def get_optometrist(self, optometrist_id: str) -> Document | None:
        doc = await self.db.optometrists.find_one({"_id": optometrist_id})
        return _public(doc) if doc else None

    # ------------------------------------------------------------------ shifts

    async def get_shift(self, shift_id: str) -> Document | None:
        return await self.db.shifts.find_one({"_id": shift_id})

    async def shifts_of_store(self, store_id: str, first: date, last: date) -> list[Document]:
        query = {
            "store_id": store_id,
            "date": {"$gte": first.isoformat(), "$lte": last.isoformat()},
        }
        return [d async for d in self.db.shifts.find(query)]

    async def shifts_of_optometrist(
        self, optometrist_id: str, first: date, last: date
    ) -> list[Document]:
        span = {"$gte": first.isoformat(), "$lte": last.isoformat()}
        query = {"$or": [
            {"optometrist_id": optometrist_id, "date": span},
            {"published.optometrist_id": optometrist_id, "published.date": span},
        ]}  # fmt: skip
        return [d async for d in self.db.shifts.find(query)]

    async def published_shifts_on(self, store_id: str, day: date) -> list[Document]:
        query = {"published.store_id": store_id, "published.date": day.isoformat()}
        docs = [d async for d in self.db.shifts.find(query)]
        return sorted(
            (
                {"shift_id": d["_id"], **d["published"]}
                for d in docs
                if not d["published"]["cancelled"]
            ),
            key=lambda s: (s["start"], s["shift_id"]),
        )

    async def shifts_on(self, store_id: str, day: str) -> list[Document]:
        """Published shifts of a store on a local ISO date."""
        return await self.published_shifts_on(store_id, date.fromisoformat(day))

    async def delete_shift(self, shift_id: str) -> None:
        await self.db.shifts.delete_one({"_id": shift_id})

    async def get_template(self, template_id: str) -> Document | None:
        return await self.db.templates.find_one({"_id": template_id})

    async def save_template(self, template: WeeklyTemplate) -> None:
        await self._upsert("templates", template.template_id, template_doc(template))

    # ------------------------------------------------------------------ leave, training

    async def leave_on(self, optometrist_id: str, day: date) -> list[Leave]:
        query = {
            "optometrist_id": optometrist_id,
            "start_date": {"$lte": day.isoformat()},
            "end_date": {"$gte": day.isoformat()},
        }
        return [leave_from_doc(d) async for d in self.db.leave.find(query)]

    async def leave_ending_from(self, optometrist_id: str, day: date) -> list[Leave]:
        """Leave not over by ``day``: current and future."""
        query = {"optometrist_id": optometrist_id, "end_date": {"$gte": day.isoformat()}}
        cursor = self.db.leave.find(query).sort("start_date", ASCENDING)
        return [leave_from_doc(d) async for d in cursor]

    async def training_from(self, optometrist_id: str, day: date) -> list[Training]:
        query = {"optometrist_id": optometrist_id, "date": {"$gte": day.isoformat()}}
        cursor = self.db.training.find(query).sort("date", ASCENDING)
        return [training_from_doc(d) async for d in cursor]

    async def training_on(self, optometrist_id: str, day: date) -> list[Training]:
        query = {"optometrist_id": optometrist_id, "date": day.isoformat()}
        return [training_from_doc(d) async for d in self.db.training.find(query)]

    # ------------------------------------------------------------------ bookings projection

    async def bookings_on(self, optometrist_id: str, day: date) -> list[BookingSlot]:
        query = {"optometrist_id": optometrist_id, "date": day.isoformat()}
        return [booking_from_doc(d) async for d in self.db.bookings.find(query)]

    async def get_booking(self, booking_id: str) -> Document | None:
        return await self.db.bookings.find_one({"_id": booking_id})

    async def put_booking(self, booking_id: str, fields: Document) -> None:
        await self.db.bookings.update_one({"_id": booking_id}, {"$set": fields}, upsert=True)

    # ------------------------------------------------------------------ demo seed marker

    async def is_seeded(self, marker: str) -> bool:
        return await self.db.seeds.find_one({"_id": marker}) is not None

    async def mark_seeded(self, marker: str, summary: str) -> None:
        await self._upsert("seeds", marker, {"summary": summary})


# ---------------------------------------------------------------------- doc <-> domain


def _public(doc: Document) -> Document:
    return {k: v for k, v in doc.items() if k != "_id"}


def _time(hhmm: str) -> time:
    return time.fromisoformat(hhmm)


def _range(doc: Document, start: str = "start", end: str = "end") -> TimeRange:
    return TimeRange(_time(doc[start]), _time(doc[end]))


def store_from_doc(doc: Document) -> Store:
    return Store(
        store_id=doc["store_id"],
        name=doc["name"],
        region=doc["region"],
        timezone=doc["timezone"],
        opening_hours={
            day: tuple(_range(r, "open", "close") for r in ranges)
            for day, ranges in doc["opening_hours"].items()
        },
        locale=doc.get("locale", "en"),
        slot_minutes=doc.get("slot_minutes", 15),
        address=doc.get("address"),
        latitude=doc.get("latitude"),
        longitude=doc.get("longitude"),
    )


def optometrist_from_doc(doc: Document) -> Optometrist:
    return Optometrist(
        optometrist_id=doc["optometrist_id"],
        name=doc["name"],
        skills=frozenset(doc["skills"]),
        home_store_id=doc["home_store_id"],
        store_ids=tuple(doc["store_ids"]),
    )


def shift_from_fields(shift_id: str, fields: Document) -> Shift:
    return Shift(
        shift_id=shift_id,
        optometrist_id=fields["optometrist_id"],
        store_id=fields["store_id"],
        day=date.fromisoformat(fields["date"]),
        hours=_range(fields),
        breaks=tuple(_range(b) for b in fields.get("breaks", [])),
    )


def shift_doc_fields(shift: Shift, cancelled: bool = False) -> Document:
    return {
        "optometrist_id": shift.optometrist_id,
        "store_id": shift.store_id,
        "date": shift.day.isoformat(),
        "start": f"{shift.hours.start:%H:%M}",
        "end": f"{shift.hours.end:%H:%M}",
        "breaks": [{"start": f"{b.start:%H:%M}", "end": f"{b.end:%H:%M}"} for b in shift.breaks],
        "cancelled": cancelled,
    }


def current_fields(doc: Document) -> Document:
    return {k: doc.get(k, False if k == "cancelled" else None) for k in SHIFT_FIELDS}


def is_pending(doc: Document) -> bool:
    """A draft: never published, or its current version differs from the published one."""
    return doc.get("published") != current_fields(doc)


def occupying_versions(doc: Document) -> list[tuple[Shift, bool]]:
    """The versions of a stored shift that hold its optometrist's time, each with whether a
    pending draft supersedes it: the live published version until its change (cancellation,
    edit, swap) is published, and the draft for what it would become."""
    pending = is_pending(doc)
    versions: list[tuple[Document | None, bool]] = [(doc.get("published"), True)] if pending else []
    versions.append((current_fields(doc), False))
    return [
        (shift_from_fields(doc["_id"], fields), superseded)
        for fields, superseded in versions
        if fields is not None and not fields["cancelled"]
    ]


def shift_view(doc: Document) -> Document:
    pending = is_pending(doc)
    state = "cancelled" if doc.get("cancelled") else "published"
    if pending:
        state = "draft" if not doc.get("cancelled") else "cancel_pending"
    return {
        "shift_id": doc["_id"],
        **current_fields(doc),
        "state": state,
        "revision": doc.get("revision", 0),
        "template_id": doc.get("template_id"),
        "published": doc.get("published"),
    }


def template_doc(template: WeeklyTemplate) -> Document:
    return {
        "template_id": template.template_id,
        "optometrist_id": template.optometrist_id,
        "store_id": template.store_id,
        "days": {
            day: {
                "start": f"{p.hours.start:%H:%M}",
                "end": f"{p.hours.end:%H:%M}",
                "breaks": [
                    {"start": f"{b.start:%H:%M}", "end": f"{b.end:%H:%M}"} for b in p.breaks
                ],
            }
            for day, p in template.days.items()
        },
    }


def template_from_doc(doc: Document) -> WeeklyTemplate:
    return WeeklyTemplate(
        template_id=doc["template_id"],
        optometrist_id=doc["optometrist_id"],
        store_id=doc["store_id"],
        days={
            day: DayPattern(_range(p), tuple(_range(b) for b in p.get("breaks", [])))
            for day, p in doc["days"].items()
        },
    )


def leave_from_doc(doc: Document) -> Leave:
    return Leave(
        leave_id=doc["leave_id"],
        optometrist_id=doc["optometrist_id"],
        start_date=date.fromisoformat(doc["start_date"]),
        end_date=date.fromisoformat(doc["end_date"]),
        kind=doc.get("kind", "leave"),
    )


def training_from_doc(doc: Document) -> Training:
    return Training(
        training_id=doc["training_id"],
        optometrist_id=doc["optometrist_id"],
        day=date.fromisoformat(doc["date"]),
        hours=_range(doc),
        timezone=doc["timezone"],
    )


def booking_from_doc(doc: Document) -> BookingSlot:
    return BookingSlot(
        booking_id=doc["_id"],
        store_id=doc["store_id"],
        exam_type=doc.get("exam_type", ""),
        start=datetime.fromisoformat(doc["slot_start"]),
        end=datetime.fromisoformat(doc["slot_end"]),
        status=doc["status"],
        timezone=doc["timezone"],
    )
