"""The aggregation step: one consumed batch -> KPI documents, exactly once in effect.

Per batch (see domain/dedup.py for why each step is there):

1. decode; roster events update the store directory; countable events become `Item`s;
2. drop repeats of an event id inside the batch and records at or below their document's
   watermark (already folded in: a Kafka redelivery);
3. record, per partition, the highest offset about to be claimed (`progress.claimed_to`);
4. claim the event ids (`seen_events`, unique `_id`, unordered insert). An id already claimed is
   a duplicate, unless the claim is this very record and lies in the range a previous owner
   claimed but did not settle (it crashed before counting): then it is counted now;
5. one guarded `$inc` + watermark `$set` per KPI document (atomic per document), then
   `progress.settled_to`;
6. the caller commits the offsets.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from optisync_common.clock import Clock, SystemClock
from optisync_common.logging import get_logger
from optisync_common.metrics import count_consumed
from schemas.envelope import Envelope
from schemas.events.base import EventPayload
from schemas.events.facts import AvailabilityViewed, BookingFact
from schemas.events.feedback import FeedbackReceived
from schemas.events.notify import DeliveryAttempted
from schemas.events.roster import StoreRegistered
from schemas.serde import DecodeError, decode
from services.analytics.adapters import metrics
from services.analytics.adapters.readmodel import KpiReadModel
from services.analytics.adapters.store import KpiStore
from services.analytics.domain import counters
from services.analytics.domain.dedup import (
    Item,
    deltas,
    doc_id,
    first_occurrences,
    not_yet_applied,
    source_key,
)

log = get_logger(__name__)


class Record(Protocol):
    """The fields of an aiokafka ConsumerRecord used here."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


@dataclass
class BatchStats:
    records: int = 0
    counted: int = 0
    duplicates: int = 0
    redelivered: int = 0
    recovered: int = 0
    ignored: int = 0
    undecodable: int = 0
    documents: int = 0
    oldest_event: dt.datetime | None = None


@dataclass
class Aggregator:
    store: KpiStore
    service: str = "analytics"
    clock: Clock = field(default_factory=SystemClock)
    # Caches of this consumer's view; `reset()` whenever partition ownership may have changed.
    _watermarks: dict[str, dict[str, int]] = field(default_factory=dict)
    # per partition: the (settled_to, claimed_to] range a previous owner may have left unsettled
    _unsettled: dict[str, tuple[int, int]] = field(default_factory=dict)
    _timezones: dict[str, str] | None = None
    read_model: KpiReadModel | None = None
    _read_model_synced: bool = False
    # True when `_watermarks` holds every document (loaded with the read model): a document
    # missing from it is new, no need to ask MongoDB (which scans for an `$in` on `_id`).
    _watermarks_complete: bool = False

    def reset(self) -> None:
        self._watermarks.clear()
        self._watermarks_complete = False
        self._unsettled.clear()
        self._timezones = None
        self._read_model_synced = False

    async def _sync_read_model(self) -> None:
        """Reload the Redis read model from MongoDB after a (re)start or if Redis lost it."""
        if self.read_model is None:
            return
        if self._read_model_synced and await self.read_model.is_ready():
            return
        docs = await self.store.all_days()
        loaded = await self.read_model.load(docs)
        self._watermarks = {d["_id"]: dict(d.get("wm") or {}) for d in docs}
        self._watermarks_complete = True
        self._read_model_synced = True
        log.info("analytics_read_model_loaded", documents=loaded)

    async def apply(self, records: Sequence[Record]) -> BatchStats:
        started = time.perf_counter()
        stats = BatchStats(records=len(records))
        if self._timezones is None:
            self._timezones = await self.store.store_timezones()
        await self._sync_read_model()
        items = await self._items(records, stats)
        first, repeats = first_occurrences(items)
        stats.duplicates += len(repeats)
        await self._load_watermarks({i.doc_id for i in first})
        pending, applied = not_yet_applied(first, self._watermarks)
        stats.redelivered += len(applied)
        counted = await self._claim(pending, stats)
        written = []
        for doc, delta in deltas(counted).items():
            known = self._watermarks.get(doc)
            if known is None:
                await self.store.note_store(delta.store_id, delta.region)
            written.append(await self.store.apply(doc, delta, known))
            self._watermarks.setdefault(doc, {}).update(delta.watermarks)
            stats.documents += 1
        await self.store.record_settled(_highest(pending))
        if self.read_model is not None and written:
            await self.read_model.put(written)
        stats.counted = len(counted)
        metrics.observe_batch(stats, counted, time.perf_counter() - started, self.clock.now())
        return stats

    async def _items(self, records: Sequence[Record], stats: BatchStats) -> list[Item]:
        items = []
        for record in records:
            try:
                envelope = decode(record.value, record.headers)
            except DecodeError as exc:
                stats.undecodable += 1
                metrics.EVENTS.labels(record.topic, exc.event_type or "?", "undecodable").inc()
                log.warning(
                    "analytics_undecodable", topic=record.topic, partition=record.partition,
                    offset=record.offset, error=str(exc),
                )  # fmt: skip
                continue
            count_consumed(self.service, record.topic, envelope.type)
            if stats.oldest_event is None or envelope.occurred_at < stats.oldest_event:
                stats.oldest_event = envelope.occurred_at
            item = await self._item(record, envelope)
            if item is None:
                stats.ignored += 1
                metrics.EVENTS.labels(record.topic, envelope.type, "ignored").inc()
            else:
                items.append(item)
        return items

    async def _item(self, record: Record, envelope: Envelope[EventPayload]) -> Item | None:
        payload = envelope.payload
        region = envelope.region
        if isinstance(payload, StoreRegistered):
            await self._register(payload)
            return None
        if isinstance(payload, BookingFact):
            region = payload.region
            date = payload.local_date
            inc = counters.booking_fact_increments(
                payload.fact.value,
                reason=payload.reason.value if payload.reason else None,
                cancelled_by=payload.cancelled_by.value if payload.cancelled_by else None,
                late=payload.late,
                lead_minutes=payload.lead_minutes,
            )
        elif isinstance(payload, AvailabilityViewed):
            date, inc = payload.local_date, counters.view_increments()
        elif isinstance(payload, FeedbackReceived):
            date, inc = payload.local_date, counters.feedback_increments(payload.rating)
        elif isinstance(payload, DeliveryAttempted):
            date = self._local_date(envelope.store_id, envelope.occurred_at)
            inc = counters.delivery_increments(payload.status.value)
        else:
            return None
        store_id = envelope.store_id
        return Item(
            event_id=str(envelope.event_id),
            source=source_key(record.topic, record.partition),
            offset=record.offset,
            doc_id=doc_id(store_id, date.isoformat()),
            store_id=store_id,
            region=region,
            date=date.isoformat(),
            increments=inc,
        )  # fmt: skip

    def _local_date(self, store_id: str, at: dt.datetime) -> dt.date:
        """Deliveries carry no local date: the store's day by its roster time zone, else UTC."""
        name = (self._timezones or {}).get(store_id)
        if name:
            try:
                return at.astimezone(ZoneInfo(name)).date()
            except ZoneInfoNotFoundError:
                pass
        return at.astimezone(dt.UTC).date()

    async def _register(self, payload: StoreRegistered) -> None:
        fields: dict[str, Any] = {
            "name": payload.name,
            "region": payload.region,
            "timezone": str(payload.timezone),
        }
        await self.store.upsert_store(payload.store_id, fields)
        if self._timezones is not None:
            self._timezones[payload.store_id] = fields["timezone"]

    async def _load_watermarks(self, doc_ids: set[str]) -> None:
        if self._watermarks_complete:
            return
        missing = [d for d in doc_ids if d not in self._watermarks]
        self._watermarks.update(await self.store.watermarks(missing))

    async def _claim(self, pending: list[Item], stats: BatchStats) -> list[Item]:
        if not pending:
            return []
        for source in {i.source for i in pending} - self._unsettled.keys():
            self._unsettled[source] = await self.store.unsettled(source)
        await self.store.record_claims(_highest(pending))
        already = await self.store.claim(pending, self.clock.now())

        def unsettled(item: Item) -> bool:
            settled, claimed = self._unsettled[item.source]
            return settled < item.offset <= claimed

        suspects = [i.event_id for i in pending if i.event_id in already and unsettled(i)]
        claims = await self.store.claims_of(suspects)
        counted = []
        for item in pending:
            if item.event_id not in already:
                counted.append(item)
            elif claims.get(item.event_id) == item.claim:
                counted.append(item)  # claimed by this record before a crash, never counted
                stats.recovered += 1
            else:
                stats.duplicates += 1
        return counted


def _highest(items: Sequence[Item]) -> dict[str, int]:
    highest: dict[str, int] = {}
    for item in items:
        highest[item.source] = max(highest.get(item.source, -1), item.offset)
    return highest


def records_of(batch: Mapping[Any, Sequence[Record]]) -> list[Record]:
    """A getmany() result as one list, each partition's records in offset order."""
    return [record for records in batch.values() for record in records]
