"""MongoDB waitlist documents (collections `waitlist` and `offers`), from `booking.events.v1`.

`waitlist`: one document per entry (`_id` = entry id) with the customer's contact, the window
and its offers by token (the staff view). `offers`: one document per offer (`_id` = token), so
`POST /v1/offers/{token}/accept` finds the store and customer by `_id` alone (the only query
FerretDB v1 answers without a scan). Every write is an insert or a `$set` of the state an event
names, so a redelivered or replayed event leaves the same documents.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from optisync_common.mongo import ensure_indexes
from schemas.envelope import Envelope
from schemas.events.base import EventPayload
from schemas.events.booking import (
    BookingConfirmed,
    OfferDeclined,
    OfferExpired,
    OfferTaken,
    SlotOffered,
    WaitlistJoined,
    WaitlistLeft,
)

Document = dict[str, Any]
WAITLIST_EVENTS = (
    WaitlistJoined, WaitlistLeft, SlotOffered, OfferTaken, OfferExpired, OfferDeclined,
)  # fmt: skip
ENTRY_STATUS = {"customer": "left", "filled": "filled", "expired": "expired"}


def _ms(value: dt.datetime) -> dt.datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def entry_doc(envelope: Envelope[Any]) -> Document:
    p: WaitlistJoined = envelope.payload
    return {
        "_id": p.waitlist_entry_id,
        "store_id": envelope.store_id,
        "customer_ref": p.customer.customer_ref,
        "customer": {"name": p.customer.name, "phone": p.customer.phone,
                     "chat_id": p.customer.chat_id, "locale": p.customer.locale},
        "channel": p.channel.value,
        "exam_type": p.exam_type,
        "optometrist_id": p.optometrist_id,
        "priority": p.priority,
        "date_from": p.date_from.isoformat(),
        "date_to": p.date_to.isoformat(),
        "time_from": p.time_from,
        "time_to": p.time_to,
        "status": "waiting",
        "joined_at": _ms(envelope.occurred_at),
        "idempotency_key": p.idempotency_key,
        "offers": {},
    }  # fmt: skip


def offer_doc(envelope: Envelope[Any]) -> Document:
    p: SlotOffered = envelope.payload
    return {
        "_id": p.offer_token,
        "store_id": envelope.store_id,
        "waitlist_entry_id": p.waitlist_entry_id,
        "customer_ref": p.customer_ref,
        "exam_type": p.exam_type,
        "optometrist_id": p.optometrist_id,
        "slot_start": _ms(p.slot_start),
        "local_start": p.local_start,
        "hold_until": _ms(p.hold_until),
        "rank": p.rank,
        "state": "live",
        "offered_at": _ms(envelope.occurred_at),
    }


def _offer_state(payload: EventPayload) -> tuple[str, Document] | None:
    """(token, fields to set) for an event that settles an offer."""
    if isinstance(payload, OfferTaken):
        return payload.offer_token, {"state": "taken", "booking_id": payload.booking_id}
    if isinstance(payload, OfferExpired):
        return payload.offer_token, {"state": "expired"}
    if isinstance(payload, OfferDeclined):
        return payload.offer_token, {"state": "declined"}
    if isinstance(payload, BookingConfirmed) and payload.offer_token is not None:
        return payload.offer_token, {"state": "accepted", "booking_id": payload.booking_id}
    return None


def is_waitlist_event(payload: EventPayload) -> bool:
    accepted_offer = isinstance(payload, BookingConfirmed) and payload.offer_token is not None
    return isinstance(payload, WAITLIST_EVENTS) or accepted_offer


class WaitlistRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.entries: AsyncCollection[Document] = db["waitlist"]
        self.offers: AsyncCollection[Document] = db["offers"]

    async def ensure_indexes(self) -> None:
        await ensure_indexes(
            self.entries,
            [IndexModel([("store_id", ASCENDING), ("date_from", ASCENDING)], name="store_dates")],
        )

    async def project(self, envelope: Envelope[EventPayload]) -> str:
        p = envelope.payload
        if isinstance(p, WaitlistJoined):
            return await self._insert(self.entries, entry_doc(envelope))
        if isinstance(p, WaitlistLeft):
            status = ENTRY_STATUS[p.reason]
            found = await self.entries.update_one(
                {"_id": p.waitlist_entry_id}, {"$set": {"status": status}}
            )
            return "applied" if found.matched_count else "not_found"
        if isinstance(p, SlotOffered):
            doc = offer_doc(envelope)
            summary = {k: v for k, v in doc.items() if k not in ("_id", "store_id")}
            await self.entries.update_one(
                {"_id": p.waitlist_entry_id}, {"$set": {f"offers.{p.offer_token}": summary}}
            )
            return await self._insert(self.offers, doc)
        settled = _offer_state(p)
        if settled is None:
            return "ignored"
        token, fields = settled
        offer = await self.offers.find_one_and_update({"_id": token}, {"$set": fields})
        if offer is None:
            return "not_found"
        nested = {f"offers.{token}.{k}": v for k, v in fields.items()}
        await self.entries.update_one({"_id": offer["waitlist_entry_id"]}, {"$set": nested})
        return "applied"

    @staticmethod
    async def _insert(coll: AsyncCollection[Document], doc: Document) -> str:
        try:
            await coll.insert_one(doc)
        except DuplicateKeyError:
            return "already_applied"
        return "applied"

    async def entry(self, entry_id: str) -> Document | None:
        return await self.entries.find_one({"_id": entry_id})

    async def offer(self, token: str) -> Document | None:
        return await self.offers.find_one({"_id": token})

    async def for_store_day(self, store_id: str, date: dt.date) -> list[Document]:
        """Entries whose day range covers `date` (staff view), oldest first."""
        day = date.isoformat()
        query = {"store_id": store_id, "date_from": {"$lte": day}, "date_to": {"$gte": day}}
        found = self.entries.find(query).sort([("joined_at", ASCENDING), ("_id", ASCENDING)])
        return [doc async for doc in found.limit(500)]

    async def drop(self, store_id: str | None = None) -> int:
        if store_id is None:
            count = await self.entries.estimated_document_count()
            await self.entries.drop()
            await self.offers.drop()
            return count
        await self.offers.delete_many({"store_id": store_id})
        return (await self.entries.delete_many({"store_id": store_id})).deleted_count
