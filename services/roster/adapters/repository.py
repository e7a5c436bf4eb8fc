"""MongoDB storage of the roster (database `optisync_roster`, owned by this service only)."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from schemas.events.base import EventPayload
from schemas.events.roster import (
    ExamTypeDefined,
    OptometristJoined,
    ShiftPublished,
    StoreRegistered,
)

Document = dict[str, Any]


class RosterRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db

    async def ensure_indexes(self) -> None:
        await self.db.shifts.create_index([("store_id", ASCENDING), ("date", ASCENDING)])
        await self.db.optometrists.create_index([("store_ids", ASCENDING)])

    async def save(self, payload: EventPayload) -> None:
        """Upsert the document an event describes (the roster's own state)."""
        doc = payload.model_dump(mode="json")
        if isinstance(payload, StoreRegistered):
            await self._upsert("stores", payload.store_id, doc)
        elif isinstance(payload, ExamTypeDefined):
            await self._upsert("exam_types", payload.code, doc)
        elif isinstance(payload, OptometristJoined):
            await self._upsert("optometrists", payload.optometrist_id, doc)
        elif isinstance(payload, ShiftPublished):
            await self._upsert("shifts", payload.shift_id, {**doc, "status": "published"})
        else:
            raise TypeError(f"no roster document for {type(payload).__name__}")

    async def _upsert(self, collection: str, key: str, doc: Document) -> None:
        await self.db[collection].replace_one({"_id": key}, {"_id": key, **doc}, upsert=True)

    async def list_stores(self) -> list[Document]:
        return [_public(d) async for d in self.db.stores.find().sort("_id", ASCENDING)]

    async def get_store(self, store_id: str) -> Document | None:
        doc = await self.db.stores.find_one({"_id": store_id})
        return _public(doc) if doc else None

    async def list_exam_types(self) -> list[Document]:
        return [_public(d) async for d in self.db.exam_types.find().sort("_id", ASCENDING)]

    async def optometrists_at(self, store_id: str) -> list[Document]:
        cursor = self.db.optometrists.find({"store_ids": store_id}).sort("_id", ASCENDING)
        return [_public(d) async for d in cursor]

    async def shifts_on(self, store_id: str, date: str) -> list[Document]:
        cursor = self.db.shifts.find({"store_id": store_id, "date": date}).sort("start", ASCENDING)
        return [_public(d) async for d in cursor]

    async def is_seeded(self, marker: str) -> bool:
        return await self.db.seeds.find_one({"_id": marker}) is not None

    async def mark_seeded(self, marker: str, summary: str) -> None:
        await self._upsert("seeds", marker, {"summary": summary})


def _public(doc: Document) -> Document:
    return {k: v for k, v in doc.items() if k != "_id"}
