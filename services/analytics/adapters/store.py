"""MongoDB storage of the analytics service (its own database, `optisync_analytics`).

* `kpi_days`: one document per store and store-local day, `_id` `<store_id>|<YYYY-MM-DD>`, with
  `counts` (see domain/counters.py) and `wm` (per source partition, the highest offset folded in).
* `seen_events`: one document per counted event id (`_id`), with the record that claimed it and
  when; pruned after `ANALYTICS_SEEN_RETENTION_DAYS` (longer than the topics keep records).
* `progress`: per source partition, the highest offset claimed (`claimed_to`) and the highest
  whose batch was fully counted (`settled_to`): a new owner of the partition resolves claims
  between the two (the crash window, see domain/dedup.py); normally the gap is empty.
* `stores`: store directory from `roster.events.v1` (name, region, time zone) for the dashboard.

Documents are read by `_id` or by a `date` range (indexed); rollups happen in Python.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from pymongo import IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from optisync_common.mongo import ensure_indexes
from services.analytics.domain.dedup import DocDelta, Item
from services.analytics.domain.kpis import StoreDay

Doc = dict[str, Any]
DUPLICATE_KEY = 11000


class WatermarkConflict(RuntimeError):
    """Another consumer moved a document's watermark meanwhile (a rebalance overlap)."""


class KpiStore:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.db = db
        self.days = db["kpi_days"]
        self.seen = db["seen_events"]
        self.progress = db["progress"]
        self.stores = db["stores"]

    async def ensure_indexes(self) -> None:
        await ensure_indexes(self.days, [IndexModel("date")])

    async def drop(self) -> None:
        for coll in (self.days, self.seen, self.progress):
            await coll.drop()
        await self.ensure_indexes()

    # ------------------------------------------------------------------ aggregation side

    async def watermarks(self, doc_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        if not doc_ids:
            return {}
        found = self.days.find({"_id": {"$in": list(doc_ids)}}, {"wm": 1})
        return {d["_id"]: dict(d.get("wm") or {}) async for d in found}

    async def unsettled(self, source: str) -> tuple[int, int]:
        """(settled_to, claimed_to) of a partition: claims above `settled_to` and up to
        `claimed_to` may belong to a batch that crashed before it was counted."""
        doc = await self.progress.find_one({"_id": source}) or {}
        return int(doc.get("settled_to", -1)), int(doc.get("claimed_to", -1))

    async def record_claims(self, highest: dict[str, int]) -> None:
        await self._raise("claimed_to", highest)

    async def record_settled(self, highest: dict[str, int]) -> None:
        await self._raise("settled_to", highest)

    async def _raise(self, field: str, highest: dict[str, int]) -> None:
        for source, offset in highest.items():
            await self.progress.update_one({"_id": source}, {"$max": {field: offset}}, upsert=True)

    async def claim(self, items: Sequence[Item], now: dt.datetime) -> set[str]:
        """Insert the seen-ids of `items`; returns the event ids that were already there."""
        if not items:
            return set()
        docs = [{"_id": i.event_id, "src": i.claim, "at": now} for i in items]
        try:
            await self.seen.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            other = [e for e in errors if e.get("code") != DUPLICATE_KEY]
            if other:
                raise
            return {items[e["index"]].event_id for e in errors}
        return set()

    async def forget_seen_before(self, cutoff: dt.datetime) -> int:
        """Drop event ids claimed before `cutoff` (older than the topics keep records, so they
        cannot come again from Kafka)."""
        result = await self.seen.delete_many({"at": {"$lt": cutoff}})
        return int(result.deleted_count)

    async def claims_of(self, event_ids: Sequence[str]) -> dict[str, str]:
        """The record that claimed each of `event_ids`. One query: FerretDB scans the
        collection for an `_id` lookup, so a lookup per id would cost a scan each."""
        if not event_ids:
            return {}
        found = self.seen.find({"_id": {"$in": list(event_ids)}})
        return {d["_id"]: str(d["src"]) async for d in found}

    async def apply(self, doc_id: str, delta: DocDelta, known: dict[str, int] | None) -> Doc:
        """Add `delta` to one document atomically, only if its watermarks for the partitions
        involved are still what this consumer last saw (`known`, None: no document yet).
        Returns the document as it is now (`v` counts its updates: the read model's version)."""
        guard: Doc = {"_id": doc_id}
        for source in delta.watermarks:
            previous = (known or {}).get(source)
            guard[f"wm.{source}"] = previous if previous is not None else {"$exists": False}
        update: Doc = {
            "$inc": {"v": 1, **{f"counts.{name}": value for name, value in delta.counts.items()}},
            "$set": {f"wm.{s}": offset for s, offset in delta.watermarks.items()},
            "$setOnInsert": {"store_id": delta.store_id, "region": delta.region,
                             "date": delta.date},
        }  # fmt: skip
        try:
            doc = await self.days.find_one_and_update(
                guard, update, upsert=True, return_document=ReturnDocument.AFTER
            )
        except DuplicateKeyError:
            raise WatermarkConflict(doc_id) from None
        if doc is None:
            raise WatermarkConflict(doc_id)
        return doc

    async def all_days(self) -> list[Doc]:
        """Every KPI document (one scan: loads the read model and the watermark cache)."""
        return [d async for d in self.days.find({})]

    async def upsert_store(self, store_id: str, fields: Doc) -> None:
        await self.stores.update_one({"_id": store_id}, {"$set": fields}, upsert=True)

    async def store_timezones(self) -> dict[str, str]:
        found = self.stores.find({"timezone": {"$exists": True}}, {"timezone": 1})
        return {d["_id"]: d["timezone"] async for d in found if d.get("timezone")}

    # ------------------------------------------------------------------ query side

    async def store_days(
        self,
        start: dt.date,
        end: dt.date,
        *,
        region: str | None = None,
        store_ids: Iterable[str] | None = None,
    ) -> list[StoreDay]:
        query: Doc = {"date": {"$gte": start.isoformat(), "$lte": end.isoformat()}}
        if region is not None:
            query["region"] = region
        wanted = set(store_ids) if store_ids is not None else None
        out = []
        async for d in self.days.find(query, {"wm": 0}):
            if wanted is not None and d["store_id"] not in wanted:
                continue
            out.append(
                StoreDay(
                    store_id=d["store_id"],
                    region=d["region"],
                    date=dt.date.fromisoformat(d["date"]),
                    counts={k: int(v) for k, v in (d.get("counts") or {}).items()},
                )
            )
        return out

    async def note_store(self, store_id: str, region: str) -> None:
        """A store seen in facts (its roster may live in a region not mirrored here)."""
        await self.stores.update_one(
            {"_id": store_id},
            {"$setOnInsert": {"region": region, "name": store_id}},
            upsert=True,
        )

    async def store_directory(self) -> list[Doc]:
        stores = [
            {"store_id": d["_id"], "name": d.get("name", d["_id"]),
             "region": d.get("region"), "timezone": d.get("timezone")}
            async for d in self.stores.find({})
        ]  # fmt: skip
        return sorted(stores, key=lambda s: (s["region"] or "", s["store_id"]))
