"""Notify's own MongoDB database: the outbox (every notification, reminders included), what it
remembers of bookings, waitlist entries and stores, channel configuration, routing rules and
open rating requests.

Every read and write on a hot path addresses one document by `_id` (FerretDB on SQLite pushes
down little else: a range or a non-`_id` filter scans the collection). Documents per booking,
waitlist entry, store and customer have deterministic ids; a booking's context lists its
reminder ids, so a cancel or reschedule updates those by `_id`. What is due when lives in a
Redis sorted set (`DueIndex`), MongoDB staying the durable record it is rebuilt from."""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, cast

import redis.asyncio as aioredis
from pymongo import ASCENDING, IndexModel, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from optisync_common.mongo import ensure_indexes
from schemas.events.base import Channel
from schemas.events.messages import StaffRole
from services.notify.adapters.batching import InsertBatcher, RedisBatcher
from services.notify.domain.model import BookingContext, Notification, Recipient, StoreProfile
from services.notify.domain.offers import WaitlistContact
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
        "recipient": _recipient_doc(n.recipient),
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


class DueIndex:
    """Redis sorted set: id of a pending notification -> when it is due (Unix seconds).

    Added *before* the MongoDB write that makes a notification pending (a crash in between
    leaves an entry without a pending document, which the scheduler drops; never a pending
    document the scheduler cannot find). Entries of documents no longer pending are removed
    when found due. `rebuild` re-adds every pending document (worker start: Redis lost or
    flushed, or entries of an older version)."""

    def __init__(self, redis: aioredis.Redis, key: str) -> None:
        self.redis = redis
        self.key = key
        # shared with the dispatcher's claims: one pipeline for the events in flight
        self.batcher = RedisBatcher(redis)

    @classmethod
    def of(cls, redis: aioredis.Redis, redis_prefix: str) -> DueIndex:
        return cls(redis, f"{redis_prefix}due")

    async def add(self, entries: dict[str, dt.datetime]) -> None:
        if entries:
            pairs = [x for nid, due in entries.items() for x in (due.timestamp(), nid)]
            await self.batcher.execute("ZADD", self.key, *pairs)

    async def remove(self, ids: list[str]) -> None:
        if ids:
            await self.redis.zrem(self.key, *ids)

    async def due(self, now: dt.datetime, limit: int) -> list[tuple[str, float]]:
        """(id, due) of the earliest entries due by `now`."""
        rows = await self.redis.zrangebyscore(
            self.key, "-inf", now.timestamp(), start=0, num=limit, withscores=True
        )
        due: list[tuple[str, float]] = []
        for member, score in cast(list[tuple[bytes | str, float]], rows):
            due.append((member.decode() if isinstance(member, bytes) else member, float(score)))
        return due

    async def size(self) -> int:
        return int(await self.redis.zcard(self.key))

    # A marker beside the index: whatever loses the index (a restart without persistence, a
    # flush) loses the marker too, and a scheduler that finds it gone rebuilds the index.
    async def is_filled(self) -> bool:
        return bool(await self.redis.exists(f"{self.key}:filled"))

    async def mark_filled(self) -> None:
        await self.redis.set(f"{self.key}:filled", "1")

    async def unmark_filled(self) -> None:
        await self.redis.delete(f"{self.key}:filled")


def _pending_due(docs: list[Doc]) -> dict[str, dt.datetime]:
    return {d["_id"]: d["due_at"] for d in docs if d.get("state") == PENDING and d.get("due_at")}


def _recipient_doc(r: Recipient) -> Doc:
    # by hand: dataclasses.asdict deep-copies, a cost on every event
    return {
        "customer_ref": r.customer_ref,
        "name": r.name,
        "phone": r.phone,
        "chat_id": r.chat_id,
        "locale": r.locale,
    }


def _context_doc(ctx: BookingContext) -> Doc:
    return {
        "store_id": ctx.store_id,
        "recipient": _recipient_doc(ctx.recipient),
        "channel": str(ctx.channel),
        "timezone": ctx.timezone,
        "exam_type": ctx.exam_type,
        "slot_start": ctx.slot_start,
        "optometrist_id": ctx.optometrist_id,
        "status": ctx.status,
    }


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


@dataclass
class Remembered:
    """A booking's stored context, the event ids applied to it and its reminders
    (`{"id", "slot_start"}`; None: stored before reminders were listed, found by a query)."""

    context: BookingContext | None = None
    applied: list[str] = field(default_factory=list)
    reminders: list[Doc] | None = None


class NotifyRepository:
    def __init__(self, db: AsyncDatabase[Doc], schedule: DueIndex | None = None) -> None:
        self.outbox = db["outbox"]
        self.bookings = db["bookings"]
        self.waitlist = db["waitlist_entries"]
        self.stores = db["stores"]
        self.chains = db["chains"]
        self.rules = db["routing_rules"]
        self.rating_requests = db["rating_requests"]
        self.rating_customers = db["rating_customers"]
        # Only the worker and replay write pending notifications; the API reads.
        self.schedule = schedule
        self._outbox_inserts = InsertBatcher(self.outbox)
        self._booking_inserts = InsertBatcher(self.bookings)
        self._waitlist_inserts = InsertBatcher(self.waitlist)

    async def close(self) -> None:
        await self._outbox_inserts.close()
        await self._booking_inserts.close()
        await self._waitlist_inserts.close()
        if self.schedule is not None:
            await self.schedule.batcher.close()

    def _schedule(self) -> DueIndex:
        if self.schedule is None:
            raise RuntimeError("this repository was opened without the due index (Redis)")
        return self.schedule

    async def store_notifications(self, docs: list[Doc]) -> set[str]:
        """Insert outbox documents (batched with other partitions'); returns the ids that
        were already stored. Pending ones are put in the due index first."""
        pending = _pending_due(docs)
        if pending:
            await self._schedule().add(pending)
        return await self._outbox_inserts.insert(docs)

    async def add_context(self, ctx: BookingContext, event_id: str, reminders: list[Doc]) -> None:
        """A confirmed booking's context: a batched insert. If it exists already (a redelivered
        confirmation, or a booking id confirmed again), an update unless this event was applied."""
        doc = {
            "_id": ctx.booking_id,
            **_context_doc(ctx),
            "applied": [event_id],
            "reminders": reminders,
        }
        duplicate = bool(await self._booking_inserts.insert([doc]))
        if duplicate and event_id not in (await self.context(ctx.booking_id)).applied:
            await self.save_context(ctx, event_id, reminders)

    async def ensure_indexes(self) -> None:
        # Used only by `rebuild_schedule` (a scan on FerretDB either way; an index on MongoDB).
        await ensure_indexes(
            self.outbox, [IndexModel([("state", ASCENDING), ("due_at", ASCENDING)])]
        )
        if await self.rules.count_documents({}, limit=1) == 0:
            for rule in DEFAULT_RULES:
                # another instance may have seeded it first
                with contextlib.suppress(DuplicateKeyError):
                    await self.rules.insert_one(rule_doc(rule))

    # --- outbox -------------------------------------------------------------------------

    async def record_outcome(self, doc: Doc) -> None:
        outcome = ("state", "attempts", "sent_at", "due_at", "last_error", "finished_at")
        await self.set_state(doc["_id"], {k: doc[k] for k in outcome if k in doc})

    async def set_state(self, notification_id: str, fields: Doc) -> None:
        """Update one outbox document by `_id`; pending again (a retry) means due again."""
        if fields.get("state") == PENDING and fields.get("due_at") is not None:
            await self._schedule().add({notification_id: fields["due_at"]})
        await self.outbox.update_one({"_id": notification_id}, {"$set": fields})

    async def get(self, notification_id: str) -> Doc | None:
        return await self.outbox.find_one({"_id": notification_id})

    async def stored_ids(self, notification_ids: list[str]) -> set[str]:
        """Which of these notifications the outbox holds (by `_id` alone)."""
        found = self.outbox.find({"_id": {"$in": notification_ids}}, {"_id": 1})
        return {doc["_id"] async for doc in found}

    async def due(self, now: dt.datetime, limit: int) -> list[tuple[str, float]]:
        return await self._schedule().due(now, limit)

    async def schedule_one(self, notification_id: str, due_at: dt.datetime) -> None:
        await self._schedule().add({notification_id: due_at})

    async def unschedule(self, notification_ids: list[str]) -> None:
        await self._schedule().remove(notification_ids)

    async def rebuild_schedule(self, chunk: int = 1000) -> int:
        """Put every pending notification in the due index (idempotent: ZADD of what MongoDB
        says). One pass over the outbox, at worker start and when the index was lost.

        The marker goes first: an index lost during the pass loses it again, so the next
        check rebuilds once more instead of trusting a half-filled index; a pass that fails
        takes the marker back for the same reason."""
        schedule = self._schedule()
        await schedule.mark_filled()
        try:
            return await self._fill_schedule(schedule, chunk)
        except BaseException:
            with contextlib.suppress(Exception):
                await schedule.unmark_filled()
            raise

    async def _fill_schedule(self, schedule: DueIndex, chunk: int) -> int:
        batch: dict[str, dt.datetime] = {}
        count = 0
        cursor = self.outbox.find({"state": PENDING}, {"_id": 1, "due_at": 1})
        async for doc in cursor:
            if doc.get("due_at") is None:
                continue
            batch[doc["_id"]] = doc["due_at"]
            if len(batch) >= chunk:
                await schedule.add(batch)
                count += len(batch)
                batch = {}
        await schedule.add(batch)
        return count + len(batch)

    async def schedule_lost(self) -> bool:
        """Whether Redis lost the due index since it was last rebuilt."""
        return not await self._schedule().is_filled()

    async def drop_reminders(
        self, booking_id: str, reminders: list[Doc] | None, keep_slot: dt.datetime | None
    ) -> list[Doc]:
        """Cancel the booking's pending reminders except those for `keep_slot` (None: all);
        returns the reminders kept. Updates by `_id` in one command."""
        if reminders is None:  # a context stored before reminders were listed: one query
            reminders = [
                {"id": d["_id"], "slot_start": d.get("slot_start")}
                async for d in self.outbox.find(
                    {"booking_id": booking_id, "kind": "reminder", "state": PENDING},
                    {"slot_start": 1},
                )
            ]
        keep = [r for r in reminders if keep_slot is not None and r["slot_start"] == keep_slot]
        drop = [r["id"] for r in reminders if r not in keep]
        if drop:
            await self.outbox.bulk_write(
                [
                    UpdateOne({"_id": nid, "state": PENDING}, {"$set": {"state": CANCELLED}})
                    for nid in drop
                ],
                ordered=False,
            )
            await self._schedule().remove(drop)
        return keep

    async def revive(self, notification_id: str, doc: Doc | None, now: dt.datetime) -> bool:
        """Replay from the DLQ: a dead-lettered notification becomes due again (once)."""
        if doc is not None:
            with contextlib.suppress(DuplicateKeyError):
                await self.outbox.insert_one({**doc, "state": DEAD})
        await self._schedule().add({notification_id: now})
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
        if result.modified_count:
            # Indexed again: a worker that polled between the first entry and the update found
            # it still dead-lettered and took it out of the index, and nothing would send it.
            await self._schedule().add({notification_id: now})
        return bool(result.modified_count)

    # --- bookings and stores ------------------------------------------------------------

    async def context(self, booking_id: str) -> Remembered:
        doc = await self.bookings.find_one({"_id": booking_id})
        if doc is None:
            return Remembered()
        return Remembered(_context_of(doc), list(doc.get("applied", [])), doc.get("reminders"))

    async def save_context(self, ctx: BookingContext, event_id: str, reminders: list[Doc]) -> None:
        await self.bookings.update_one(
            {"_id": ctx.booking_id},
            {
                "$set": {**_context_doc(ctx), "reminders": reminders},
                "$push": {"applied": {"$each": [event_id], "$slice": -50}},
            },
            upsert=True,
        )

    # --- waitlist entries (SlotOffered & co. carry only ids) --------------------------------

    async def save_waitlist_contact(self, contact: WaitlistContact) -> None:
        """A batched insert (with other events'); an update if the entry is known already."""
        fields = {
            "store_id": contact.store_id,
            "recipient": _recipient_doc(contact.recipient),
            "channel": str(contact.channel),
            "exam_type": contact.exam_type,
        }
        if await self._waitlist_inserts.insert([{"_id": contact.entry_id, **fields}]):
            await self.waitlist.update_one({"_id": contact.entry_id}, {"$set": fields})

    async def waitlist_contact(self, entry_id: str) -> WaitlistContact | None:
        doc = await self.waitlist.find_one({"_id": entry_id})
        if doc is None or "recipient" not in doc:
            return None
        return WaitlistContact(
            entry_id=entry_id,
            store_id=doc["store_id"],
            recipient=Recipient(**doc["recipient"]),
            channel=Channel(doc["channel"]),
            exam_type=doc["exam_type"],
        )

    async def waitlist_left(self, entry_id: str, reason: str, at: dt.datetime) -> None:
        await self.waitlist.update_one(
            {"_id": entry_id}, {"$set": {"left": reason, "left_at": at}}, upsert=True
        )

    async def store(self, store_id: str) -> StoreProfile | None:
        doc = await self.stores.find_one({"_id": store_id})
        if doc is None:
            return None
        offsets = doc.get("reminder_offsets_min")
        if offsets is None and doc.get("chain_id"):
            chain = await self.chains.find_one({"_id": doc["chain_id"]})
            offsets = (chain or {}).get("reminder_offsets_min")
        names = {_unescape_key(k): v for k, v in (doc.get("exam_names") or {}).items()}
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
        """Exam names live in the store's document: its profile is one read by `_id`."""
        await self.stores.update_one(
            {"_id": store_id}, {"$set": {f"exam_names.{_escape_key(code)}": name}}, upsert=True
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
        # The customer's open requests, newest last: a reply finds them by `_id`.
        await self.rating_customers.update_one(
            {"_id": ctx.recipient.customer_ref},
            {
                "$push": {
                    "open": {
                        "$each": [{"booking_id": ctx.booking_id, "opened_at": opened_at}],
                        "$slice": -10,
                    }
                }
            },
            upsert=True,
        )
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
        customer = await self.rating_customers.find_one({"_id": customer_ref})
        opened = [o for o in (customer or {}).get("open", []) if o["opened_at"] >= since]
        seen: set[str] = set()
        for entry in sorted(opened, key=lambda o: o["opened_at"], reverse=True):
            if entry["booking_id"] in seen:
                continue
            seen.add(entry["booking_id"])
            doc = await self.rating_requests.find_one_and_update(
                {"_id": entry["booking_id"], "answered": False},
                {"$set": {"answered": True}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is not None:
                return doc
        return None


def _escape_key(key: str) -> str:
    """A field name MongoDB takes: no `.`, no leading `$` (and `%` escaped to stay reversible)."""
    return key.replace("%", "%25").replace(".", "%2E").replace("$", "%24")


def _unescape_key(key: str) -> str:
    return key.replace("%24", "$").replace("%2E", ".").replace("%25", "%")


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
