"""MongoDB booking documents (database `optisync_booking`, collection `bookings`).

One document per confirmed booking (`_id` = booking id), built only from `booking.events.v1`
by the projector. Every change names the event that made it: an event already listed in
`applied_event_ids` is skipped, so redeliveries and replays are harmless, and a partition's
events arrive in order, so the document follows the processor's decisions exactly.

The same pure functions let the API answer with the document a decision produces before the
projector has written it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, cast

import orjson
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from optisync_common.mongo import ensure_indexes
from schemas.envelope import Envelope
from schemas.events.base import EventPayload
from schemas.events.booking import (
    BookingCancelled,
    BookingCheckedIn,
    BookingCompleted,
    BookingConfirmed,
    BookingDisplaced,
    BookingNoShow,
    BookingReassigned,
    BookingRescheduled,
)
from services.booking.adapters.waitlist_docs import WaitlistRepository, is_waitlist_event

Document = dict[str, Any]
COLLECTION = "bookings"


class BookingStatus(StrEnum):
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    CHECKED_IN = "checked_in"
    NO_SHOW = "no_show"
    COMPLETED = "completed"
    DISPLACED = "displaced"  # a roster change took the slot away; the customer picks a new time


DUPLICATE_KEY = 11000
ProjectResult = Literal["applied", "already_applied", "not_found", "conflict", "ignored"]


@dataclass(frozen=True, slots=True)
class Change:
    """What one event does to an existing booking document."""

    booking_id: str
    set: Document
    history: Document = field(default_factory=dict)


def _ms(value: Any) -> Any:
    """BSON keeps milliseconds: truncate here so the document the API answers with right
    after a decision equals the one read back from MongoDB later."""
    if isinstance(value, dt.datetime):
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    return value


def _entry(envelope: Envelope[Any], event: str, **details: Any) -> Document:
    return {
        "event": event,
        "event_id": str(envelope.event_id),
        "at": _ms(envelope.occurred_at),
        **{k: _ms(v) for k, v in details.items() if v is not None},
    }


def confirmed_doc(envelope: Envelope[Any]) -> Document:
    """The document of a new booking (`envelope` carries a BookingConfirmed). Times come from
    the event, never from a clock, so a rebuild writes the same document."""
    p: BookingConfirmed = envelope.payload
    event_id = str(envelope.event_id)
    return {
        "_id": p.booking_id,
        "store_id": envelope.store_id,
        "customer_ref": p.customer.customer_ref,
        "customer": {
            "name": p.customer.name,
            "phone": p.customer.phone,
            "locale": p.customer.locale,
        },
        "channel": p.channel.value,
        "exam_type": p.exam_type,
        "optometrist_id": p.optometrist_id,
        "slot_start": _ms(p.slot_start),
        "slot_end": _ms(p.slot_end),
        "local_start": p.local_start,
        "timezone": p.timezone,
        "status": BookingStatus.CONFIRMED.value,
        "idempotency_key": p.idempotency_key,
        "waitlist_entry_id": p.waitlist_entry_id,
        "created_at": _ms(envelope.occurred_at),
        "updated_at": _ms(envelope.occurred_at),
        "last_event_id": event_id,
        "applied_event_ids": [event_id],
        "history": [
            _entry(envelope, "confirmed", slot_start=p.slot_start, optometrist_id=p.optometrist_id)
        ],
    }


def change_for(envelope: Envelope[EventPayload]) -> Change | None:
    """The change an event makes to its booking, or None for events that change none."""
    p = envelope.payload
    if isinstance(p, BookingCancelled):
        return Change(
            p.booking_id,
            {"status": BookingStatus.CANCELLED.value},
            _entry(envelope, "cancelled", by=p.by.value, reason=p.reason, late=p.late),
        )
    if isinstance(p, BookingRescheduled):
        return Change(
            p.booking_id,
            {
                "status": BookingStatus.CONFIRMED.value,
                "slot_start": p.new_slot_start,
                "slot_end": p.new_slot_end,
                "local_start": p.new_local_start,
                "optometrist_id": p.new_optometrist_id,
            },
            _entry(
                envelope,
                "rescheduled",
                slot_start=p.new_slot_start,
                optometrist_id=p.new_optometrist_id,
                previous_slot_start=p.old_slot_start,
                previous_optometrist_id=p.old_optometrist_id,
            ),
        )
    if isinstance(p, BookingCheckedIn):
        return Change(
            p.booking_id,
            {"status": BookingStatus.CHECKED_IN.value},
            _entry(envelope, "checked_in", staff_id=p.staff_id),
        )
    if isinstance(p, BookingNoShow):
        return Change(
            p.booking_id, {"status": BookingStatus.NO_SHOW.value}, _entry(envelope, "no_show")
        )
    if isinstance(p, BookingCompleted):
        return Change(
            p.booking_id,
            {"status": BookingStatus.COMPLETED.value, "optometrist_id": p.optometrist_id},
            _entry(envelope, "completed", optometrist_id=p.optometrist_id),
        )
    if isinstance(p, BookingReassigned):
        return Change(
            p.booking_id,
            {"optometrist_id": p.to_optometrist_id},
            _entry(
                envelope,
                "reassigned",
                optometrist_id=p.to_optometrist_id,
                previous_optometrist_id=p.from_optometrist_id,
                cause=p.cause.value,
            ),
        )
    if isinstance(p, BookingDisplaced):
        return Change(
            p.booking_id,
            {"status": BookingStatus.DISPLACED.value},
            _entry(envelope, "displaced", cause=p.cause.value),
        )
    return None


def _stamp(envelope: Envelope[Any], change: Change) -> Document:
    return {
        **{k: _ms(v) for k, v in change.set.items()},
        "updated_at": _ms(envelope.occurred_at),
        "last_event_id": str(envelope.event_id),
    }


def apply_change(doc: Document, envelope: Envelope[EventPayload]) -> Document:
    """`doc` after `envelope`, exactly as the projector's update leaves it in MongoDB."""
    change = change_for(envelope)
    event_id = str(envelope.event_id)
    if change is None or event_id in doc.get("applied_event_ids", ()):
        return doc
    return {
        **doc,
        **_stamp(envelope, change),
        "applied_event_ids": [*doc.get("applied_event_ids", ()), event_id],
        "history": [*doc.get("history", ()), change.history],
    }


# The ids this service issues (uuid4 hex for bookings and waitlist entries, uuid5 for offer
# tokens): only these can name a document still on its way to MongoDB.
_ISSUED_ID = re.compile(r"^[0-9a-f]{32}$|^[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}$")


async def wait_for_document(
    find: Callable[[str], Awaitable[Document | None]], key: str, within_s: float
) -> Document | None:
    """`find(key)`, polled with backoff for up to `within_s` while it finds nothing (at once
    for a key this service would never have issued)."""
    if not _ISSUED_ID.match(key):
        within_s = 0.0
    deadline = time.monotonic() + within_s
    pause = 0.005
    while True:
        doc = await find(key)
        if doc is not None or time.monotonic() + pause > deadline:
            return doc
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.1)


class InvalidCursor(ValueError):
    pass


def encode_cursor(doc: Document) -> str:
    raw = orjson.dumps([doc["slot_start"].isoformat(), doc["_id"]])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        start, booking_id = orjson.loads(raw)
        instant = dt.datetime.fromisoformat(start)
        if not isinstance(booking_id, str) or instant.tzinfo is None:
            raise ValueError("not a cursor's fields")
        # In UTC, as issued: a crafted one at the calendar's ends (0001-01-01T00:00+14:00)
        # overflows here rather than in the query's encoding (a 500).
        instant = instant.astimezone(dt.UTC)
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError, OverflowError) as exc:
        raise InvalidCursor("cursor is not one this API issued") from exc
    return instant, booking_id


class BookingRepository:
    """Booking documents, and (through `waitlist`) the waitlist documents: together, every
    projection of `booking.events.v1`."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.coll: AsyncCollection[Document] = db[COLLECTION]
        self.waitlist = WaitlistRepository(db)

    async def ensure_indexes(self) -> None:
        await self.waitlist.ensure_indexes()
        # Idempotency keys are unique per store: the processor (single writer per store)
        # de-duplicates within a store, so two stores may legitimately see the same key.
        await ensure_indexes(
            self.coll,
            [
                IndexModel(
                    [("store_id", ASCENDING), ("idempotency_key", ASCENDING)],
                    unique=True,
                    name="store_idempotency_key",
                ),
                IndexModel(
                    [("customer_ref", ASCENDING), ("slot_start", ASCENDING), ("_id", ASCENDING)],
                    name="customer_slot",
                ),
                IndexModel(
                    [("store_id", ASCENDING), ("slot_start", ASCENDING), ("_id", ASCENDING)],
                    name="store_slot",
                ),
                IndexModel(  # the optometrist's calendar feed
                    [("optometrist_id", ASCENDING), ("slot_start", ASCENDING)],
                    name="optometrist_slot",
                ),
            ],
        )

    async def project(self, envelope: Envelope[EventPayload]) -> ProjectResult:
        payload = envelope.payload
        if is_waitlist_event(payload):
            result = cast(ProjectResult, await self.waitlist.project(envelope))
            if not isinstance(payload, BookingConfirmed):  # an accepted offer is a booking too
                return result
        if isinstance(payload, BookingConfirmed):
            (result,) = await self.insert_confirmed([envelope])
            return result
        change = change_for(envelope)
        if change is None:
            return "ignored"
        # Filters and updates name only `_id`: FerretDB v1 answers anything more (such as
        # "event id not in applied_event_ids") by scanning the collection. The check is read
        # first instead; $addToSet keeps even two racing writers (a rebalance, a rebuild beside
        # the live projector) from recording an event twice, and a partition replays in order.
        event_id = str(envelope.event_id)
        current = await self.coll.find_one({"_id": change.booking_id}, {"applied_event_ids": 1})
        if current is None:
            return "not_found"
        if event_id in current.get("applied_event_ids", ()):
            return "already_applied"
        await self.coll.update_one(
            {"_id": change.booking_id},
            {
                "$set": _stamp(envelope, change),
                "$addToSet": {"applied_event_ids": event_id, "history": change.history},
            },
        )
        return "applied"

    @staticmethod
    def insertable(envelope: Envelope[EventPayload]) -> bool:
        """A new booking that is only a document insert (`insert_confirmed` takes many)."""
        payload = envelope.payload
        return isinstance(payload, BookingConfirmed) and not is_waitlist_event(payload)

    async def insert_confirmed(
        self, envelopes: Sequence[Envelope[EventPayload]]
    ) -> list[ProjectResult]:
        """New bookings' documents in one write (a busy store confirms many per batch)."""
        docs = [confirmed_doc(e) for e in envelopes]
        results: list[ProjectResult] = ["applied"] * len(docs)
        try:
            await self.coll.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            refused = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in refused):
                raise
            for error in refused:
                # FerretDB does not say which index refused it: ours again, or a foreign key?
                doc = docs[error["index"]]
                mine = await self.coll.find_one({"_id": doc["_id"]}, {"_id": 1}) is not None
                if mine:
                    results[error["index"]] = "already_applied"
                elif await self._take_key_over(doc):
                    results[error["index"]] = "applied"
                else:
                    results[error["index"]] = "conflict"
        return results

    async def _take_key_over(self, doc: Document) -> bool:
        """Insert `doc` whose idempotency key an older booking of the store holds. The
        processor remembers a key for 24 h, so a key sent again later (a client's fixed key, a
        channel's message ids starting over) is a new request and may book again; the older
        booking lets go of the key (kept as `released_idempotency_key`), and the unique index
        stays whole. False when a newer booking holds it (nothing this event may take)."""
        key, store_id = doc["idempotency_key"], doc["store_id"]
        holder = await self.coll.find_one(
            {"store_id": store_id, "idempotency_key": key, "_id": {"$ne": doc["_id"]}},
            {"created_at": 1},
        )
        if holder is None or holder["created_at"] > doc["created_at"]:
            return False
        await self.coll.update_one(
            {"_id": holder["_id"], "idempotency_key": key},
            {"$set": {
                "idempotency_key": f"{key}#released-by:{doc['_id']}",
                "released_idempotency_key": key,
            }},
        )  # fmt: skip
        try:
            await self.coll.insert_one(doc)
        except DuplicateKeyError:
            return await self.coll.find_one({"_id": doc["_id"]}, {"_id": 1}) is not None
        return True

    async def get(self, booking_id: str) -> Document | None:
        return await self.coll.find_one({"_id": booking_id})

    async def wait_for(self, booking_id: str, within_s: float) -> Document | None:
        """The document, polling briefly: right after a decision the projector may lag."""
        return await wait_for_document(self.get, booking_id, within_s)

    async def by_idempotency_key(self, store_id: str, key: str) -> Document | None:
        """The booking a store's idempotency key made (the unique index answers it)."""
        return await self.coll.find_one({"store_id": store_id, "idempotency_key": key})

    async def page(
        self, query: Document, *, limit: int, cursor: str | None
    ) -> tuple[list[Document], str | None]:
        """Documents ordered by (slot_start, _id), `limit` per page, keyset-paginated."""
        if cursor is not None:
            start, booking_id = decode_cursor(cursor)
            query = {
                **query,
                "$or": [
                    {"slot_start": {"$gt": start}},
                    {"slot_start": start, "_id": {"$gt": booking_id}},
                ],
            }
        found = self.coll.find(query).sort([("slot_start", ASCENDING), ("_id", ASCENDING)])
        docs = [doc async for doc in found.limit(limit + 1)]
        if len(docs) > limit:
            return docs[:limit], encode_cursor(docs[limit - 1])
        return docs, None

    async def drop(self, store_id: str | None = None) -> int:
        await self.waitlist.drop(store_id)
        if store_id is None:
            count = await self.coll.estimated_document_count()
            await self.coll.drop()
            return count
        return (await self.coll.delete_many({"store_id": store_id})).deleted_count
