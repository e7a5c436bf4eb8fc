"""Transactional outbox for roster events, without multi-document transactions (FerretDB).

A change is one *batch* document in MongoDB holding both the state writes ("effects") and the
encoded events, written before anything else happens. Then the effects are applied and the
events sent in order; each step is recorded on the batch. A crash at any point leaves a batch
that `recover()` (at startup) or the sweeper finishes: effects are idempotent `$set`s and event
ids are deterministic, so a re-sent event is de-duplicated by consumers.

One writer per roster database is assumed (one roster-api per region): the lock below orders
batches within the process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from optisync_common.kafka import EventPublisher
from optisync_common.logging import get_logger
from optisync_common.mongo import ensure_indexes
from schemas.envelope import Envelope
from schemas.serde import decode

log = get_logger(__name__)

Document = dict[str, Any]
STAGED, APPLIED, SENT = "staged", "applied", "sent"


@dataclass(frozen=True)
class Effect:
    """One idempotent state write: `$set` on a document (upserted), or its deletion."""

    collection: str
    doc_id: str
    set: Document = field(default_factory=dict)
    delete: bool = False

    def to_doc(self) -> Document:
        return {"coll": self.collection, "id": self.doc_id, "set": self.set, "delete": self.delete}


class Outbox:
    def __init__(self, db: AsyncDatabase[Document], publisher: Callable[[], EventPublisher]):
        self.db = db
        self._publisher = publisher
        self._lock = asyncio.Lock()

    async def ensure_indexes(self) -> None:
        await ensure_indexes(
            self.db.outbox, [IndexModel([("state", ASCENDING), ("seq", ASCENDING)])]
        )

    async def commit(self, effects: Sequence[Effect], events: Sequence[Envelope[Any]]) -> bool:
        """Stage, apply and send one change; True when its events reached Kafka (else the
        sweeper sends them later, in order)."""
        async with self._lock:
            batch = {
                "_id": uuid.uuid4().hex,
                "seq": await self._next_seq(),
                "state": STAGED,
                "effects": [e.to_doc() for e in effects],
                "messages": [env.model_dump_json() for env in events],
            }
            await self.db.outbox.insert_one(batch)
            await self._apply(batch)
        return await self.drain()

    async def recover(self) -> None:
        """Finish what a crash interrupted: apply staged batches, then send."""
        async with self._lock:
            async for batch in self.db.outbox.find({"state": STAGED}).sort("seq", ASCENDING):
                await self._apply(batch)
        await self.drain()

    async def drain(self) -> bool:
        """Send every applied batch in commit order; False if Kafka is not reachable now."""
        async with self._lock:
            try:
                publisher = self._publisher()
                cursor = self.db.outbox.find({"state": APPLIED}).sort("seq", ASCENDING)
                async for batch in cursor:
                    for value in batch["messages"]:
                        await publisher.publish(decode(value.encode()))
                    sent = {"state": SENT, "sent_at": dt.datetime.now(dt.UTC)}
                    await self.db.outbox.update_one({"_id": batch["_id"]}, {"$set": sent})
            except Exception as exc:  # Kafka down or not yet connected: the sweeper retries
                log.warning("roster_outbox_send_failed", error=str(exc))
                return False
        return True

    async def pending(self) -> int:
        return await self.db.outbox.count_documents({"state": {"$ne": SENT}})

    async def sweep_forever(self, every_s: float = 2.0, keep_sent_s: float = 86400.0) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                if await self.pending():
                    await self.recover()
                await self.prune(keep_sent_s)
            except Exception as exc:  # MongoDB blip: try again next round
                log.warning("roster_outbox_sweep_failed", error=str(exc))

    async def prune(self, keep_sent_s: float) -> None:
        """Sent batches are kept a while for inspection, then dropped."""
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=keep_sent_s)
        await self.db.outbox.delete_many({"state": SENT, "sent_at": {"$lt": cutoff}})

    async def _apply(self, batch: Document) -> None:
        for effect in batch["effects"]:
            coll = self.db[effect["coll"]]
            if effect["delete"]:
                await coll.delete_one({"_id": effect["id"]})
            else:
                await coll.update_one({"_id": effect["id"]}, {"$set": effect["set"]}, upsert=True)
        await self.db.outbox.update_one({"_id": batch["_id"]}, {"$set": {"state": APPLIED}})
        batch["state"] = APPLIED

    async def _next_seq(self) -> int:
        counter = await self.db.counters.find_one_and_update(
            {"_id": "outbox"},
            {"$inc": {"value": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert counter is not None  # upsert + AFTER always returns the document
        return int(counter["value"])
