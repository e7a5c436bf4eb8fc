"""Notify's own MongoDB database: the outbox (every notification, reminders included, indexed
by due time), what it remembers of bookings and stores, channel configuration, routing rules
and open rating requests."""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import asdict
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from schemas.events.base import Channel
from schemas.events.messages import StaffRole
from services.notify.adapters.batching import InsertBatcher
from services.notify.domain.model import BookingContext, Notification, Recipient, StoreProfile
from services.notify.domain.routing import DEFAULT_RULES, RoutingRule

Doc = dict[str, Any]
DUPLICATE_KEY = 11000

PENDING, SENT, DEAD, SKIPPED, CANCELLED = "pending", "sent", "dead_lettered", "skipped", "cancelled"


def notification_doc(n: Notification, now: dt.datetime) -> Doc:
    return {
        "_id": n.notification_id,
        "kind": str(n.kind),
        "template": n.template,
        "store_id": n.store_id,
        "booking_id": n.booking_id,
        "recipient": asdict(n.recipient),
        "channel": str(n.channel),
        "locale": n.locale,
        "subject": n.subject,
        "text": n.text,
        "source_event_id": n.source_event_id,
        "due_at": n.due_at,
        "stale_after": n.stale_after,
        "slot_start": n.slot_start,
        "state": PENDING,
        "attempts": 0,
        "created_at": now,
    }


def _context_doc(ctx: BookingContext) -> Doc:
    doc = asdict(ctx)
    doc["channel"] = str(ctx.channel)
    doc.pop("booking_id")
    return doc


def _context_of(doc: Doc) -> BookingContext:
    return BookingContext(
        booking_id=doc["_id"],
        store_id=doc["store_id"],
        recipient=Recipient(**doc["recipient"]),
        channel=Channel(doc["channel"]),
        timezone=doc["timezone"],
        exam_type=doc["exam_type"],
        slot_start=doc["slot_start"],
        optometrist_id=doc["optometrist_id"],
        status=doc.get("status", "confirmed"),
    )


class NotifyRepository:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.outbox = db["outbox"]
        self.bookings = db["bookings"]
        self.stores = db["stores"]
        self.exam_types = db["exam_types"]
        self.chains = db["chains"]
        self.rules = db["routing_rules"]
        self.rating_requests = db["rating_requests"]
        self._outbox_inserts = InsertBatcher(self.outbox)
        self._booking_inserts = InsertBatcher(self.bookings)

    async def close(self) -> None:
        await self._outbox_inserts.close()
        await self._booking_inserts.close()

    async def store_notifications(self, docs: list[Doc]) -> set[str]:
        """Insert outbox documents (batched with other partitions'); returns the ids that
        were already stored."""
        return await self._outbox_inserts.insert(docs)

    async def add_context(self, ctx: BookingContext, event_id: str) -> None:
        """A confirmed booking's context: a batched insert, an update if it exists already."""
        doc = {"_id": ctx.booking_id, **_context_doc(ctx), "applied": [event_id]}
        if await self._booking_inserts.insert([doc]):
            await self.save_context(ctx, event_id)

    async def ensure_indexes(self) -> None:
        await self.outbox.create_index([("state", ASCENDING), ("due_at", ASCENDING)])
        await self.outbox.create_index([("booking_id", ASCENDING), ("kind", ASCENDING)])
        await self.rating_requests.create_index([("customer_ref", ASCENDING)])
        await self.exam_types.create_index([("store_id", ASCENDING)])
        if await self.rules.count_documents({}, limit=1) == 0:
            for rule in DEFAULT_RULES:
                # another instance may have seeded it first
                with contextlib.suppress(DuplicateKeyError):
                    await self.rules.insert_one(rule_doc(rule))

    # --- outbox -------------------------------------------------------------------------

    async def record_outcome(self, doc: Doc) -> None:
        outcome = ("state", "attempts", "sent_at", "due_at", "last_error", "finished_at")
        await self.outbox.update_one(
            {"_id": doc["_id"]}, {"$set": {k: doc[k] for k in outcome if k in doc}}
        )

    async def get(self, notification_id: str) -> Doc | None:
        return await self.outbox.find_one({"_id": notification_id})

    async def due(self, now: dt.datetime, limit: int) -> list[Doc]:
        cursor = self.outbox.find({"state": PENDING, "due_at": {"$lte": now}}).sort("due_at", 1)
        return await cursor.limit(limit).to_list(limit)

    async def finish(self, notification_id: str, state: str, **fields: Any) -> None:
        await self.outbox.update_one({"_id": notification_id}, {"$set": {"state": state, **fields}})

    async def drop_reminders(self, booking_id: str, keep_slot: dt.datetime | None) -> int:
        query: Doc = {"booking_id": booking_id, "kind": "reminder", "state": PENDING}
        if keep_slot is not None:
            query["slot_start"] = {"$ne": keep_slot}
        result = await self.outbox.update_many(query, {"$set": {"state": CANCELLED}})
        return int(result.modified_count)

    async def revive(self, notification_id: str, doc: Doc | None, now: dt.datetime) -> bool:
        """Replay from the DLQ: a dead-lettered notification becomes due again (once)."""
        if doc is not None:
            with contextlib.suppress(DuplicateKeyError):
                await self.outbox.insert_one({**doc, "state": DEAD})
        result = await self.outbox.update_one(
            {"_id": notification_id, "state": DEAD},
            # ops asked for it: sent however old it is
            {
                "$set": {
                    "state": PENDING,
                    "due_at": now,
                    "attempts": 0,
                    "replayed_at": now,
                    "stale_after": None,
                }
            },
        )
        return bool(result.modified_count)

    # --- bookings and stores ------------------------------------------------------------

    async def context(self, booking_id: str) -> tuple[BookingContext | None, list[str]]:
        doc = await self.bookings.find_one({"_id": booking_id})
        if doc is None:
            return None, []
        return _context_of(doc), list(doc.get("applied", []))

    async def save_context(self, ctx: BookingContext, event_id: str) -> None:
        await self.bookings.update_one(
            {"_id": ctx.booking_id},
            {"$set": _context_doc(ctx), "$push": {"applied": {"$each": [event_id], "$slice": -50}}},
            upsert=True,
        )

    async def store(self, store_id: str) -> StoreProfile | None:
        doc = await self.stores.find_one({"_id": store_id})
        if doc is None:
            return None
        offsets = doc.get("reminder_offsets_min")
        if offsets is None and doc.get("chain_id"):
            chain = await self.chains.find_one({"_id": doc["chain_id"]})
            offsets = (chain or {}).get("reminder_offsets_min")
        names = {
            d["code"]: d["name"]
            async for d in self.exam_types.find({"store_id": store_id}, {"code": 1, "name": 1})
        }
        return StoreProfile(
            store_id=store_id,
            timezone=doc.get("timezone", "UTC"),
            locale=doc.get("locale", "en"),
            name=doc.get("name", ""),
            chain_id=doc.get("chain_id"),
            reminder_offsets_min=tuple(offsets) if offsets else None,
            exam_names=names,
        )

    async def store_doc(self, store_id: str) -> Doc | None:
        return await self.stores.find_one({"_id": store_id})

    async def upsert_store(self, store_id: str, **fields: Any) -> Doc:
        doc = await self.stores.find_one_and_update(
            {"_id": store_id},
            {"$set": fields},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert doc is not None
        return doc

    async def upsert_exam_type(self, store_id: str, code: str, name: str) -> None:
        await self.exam_types.update_one(
            {"_id": f"{store_id}:{code}"},
            {"$set": {"store_id": store_id, "code": code, "name": name}},
            upsert=True,
        )

    async def chain_doc(self, chain_id: str) -> Doc | None:
        return await self.chains.find_one({"_id": chain_id})

    async def upsert_chain(self, chain_id: str, **fields: Any) -> Doc:
        doc = await self.chains.find_one_and_update(
            {"_id": chain_id}, {"$set": fields}, upsert=True, return_document=ReturnDocument.AFTER
        )
        assert doc is not None
        return doc

    async def channel_spec(self, store_id: str, channel: str) -> dict[str, Any] | None:
        """The store's adapter for `channel`, else its chain's (`*` = any channel)."""
        store = await self.stores.find_one({"_id": store_id}, {"channels": 1, "chain_id": 1})
        scopes = [store or {}]
        if store and store.get("chain_id"):
            scopes.append(await self.chains.find_one({"_id": store["chain_id"]}) or {})
        for scope in scopes:
            channels = scope.get("channels") or {}
            spec = channels.get(channel) or channels.get("*")
            if spec:
                return dict(spec)
        return None

    # --- routing rules and ratings -------------------------------------------------------

    async def routing_rules(self) -> list[RoutingRule]:
        return [rule_of(doc) async for doc in self.rules.find({})]

    async def put_rule(self, rule: RoutingRule) -> None:
        await self.rules.replace_one({"_id": rule.rule_id}, rule_doc(rule), upsert=True)

    async def delete_rule(self, rule_id: str) -> bool:
        return bool((await self.rules.delete_one({"_id": rule_id})).deleted_count)

    async def open_rating_request(
        self, ctx: BookingContext, channel: str, opened_at: dt.datetime
    ) -> None:
        await self.rating_requests.update_one(
            {"_id": ctx.booking_id},
            {
                "$setOnInsert": {"answered": False},
                "$set": {
                    "customer_ref": ctx.recipient.customer_ref,
                    "store_id": ctx.store_id,
                    "exam_type": ctx.exam_type,
                    "channel": channel,
                    "opened_at": opened_at,
                },
            },
            upsert=True,
        )

    async def take_rating_request(self, customer_ref: str, since: dt.datetime) -> Doc | None:
        """The customer's latest unanswered rating request, marked answered (first reply wins)."""
        candidates = (
            await self.rating_requests.find(
                {"customer_ref": customer_ref, "answered": False, "opened_at": {"$gte": since}}
            )
            .sort("opened_at", -1)
            .to_list(5)
        )
        for doc in candidates:
            result = await self.rating_requests.update_one(
                {"_id": doc["_id"], "answered": False}, {"$set": {"answered": True}}
            )
            if result.modified_count:
                return doc
        return None


def rule_doc(rule: RoutingRule) -> Doc:
    return {
        "_id": rule.rule_id,
        "locale": rule.locale,
        "keywords": list(rule.keywords),
        "role": str(rule.role),
        "priority": rule.priority,
    }


def rule_of(doc: Doc) -> RoutingRule:
    return RoutingRule(
        rule_id=doc["_id"],
        locale=doc["locale"],
        keywords=tuple(doc["keywords"]),
        role=StaffRole(doc["role"]),
        priority=int(doc.get("priority", 100)),
    )
