"""Live updates for the pages, from records every API process sees (no consumer group):

* `booking.events.v1`: decisions, handed over by the reply waiter's consumer (`booking_event`;
  one consumer of the busiest topic per process, not two), and
* `messages.routed.v1`, from the end, read_committed: routed customer messages, both fanned out
  by store id to the open consoles (server-sent events);
* `roster.events.v1`, from the beginning: the store directory the pages show. These two are
  read by the feed's own consumer.

A booking event is turned into the same document the projector writes (the pure functions of
`adapters.bookings`), so a console shows a booking as soon as the processor decided it, without
waiting for MongoDB. After a reconnect subscribers get `resync` (records may have been missed
while away) and reload from the API.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from optisync_common.kafka import consume_forever, make_consumer
from optisync_common.logging import get_logger
from optisync_common.settings import ServiceSettings
from schemas.envelope import Envelope
from schemas.events.base import EventPayload
from schemas.events.booking import BookingConfirmed, BookingRejected, CommandFailed
from schemas.events.messages import MessageRouted
from schemas.registry import BOOKING_EVENTS, MESSAGES_ROUTED, ROSTER_EVENTS
from schemas.serde import DecodeError, decode
from services.booking.adapters.bookings import change_for, confirmed_doc
from services.booking.adapters.replies import topic_partitions
from services.booking.api.presenters import booking_from_doc
from services.booking.web.directory import StoreDirectory

log = get_logger(__name__)

QUEUE_LIMIT = 500  # a console this far behind reloads instead
_SILENT = (BookingRejected, CommandFailed)  # refusals change nothing a console shows
Message = dict[str, Any]


class LiveHub:
    """Store id -> the queues of the open event streams of that store."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[Message]]] = {}

    def has_subscribers(self, store_id: str) -> bool:
        return bool(self._subscribers.get(store_id))

    def subscriber_count(self) -> int:
        return sum(len(queues) for queues in self._subscribers.values())

    def publish(self, store_id: str, message: Message) -> None:
        for queue in list(self._subscribers.get(store_id, ())):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                _reset(queue)

    def resync_all(self) -> None:
        for queues in self._subscribers.values():
            for queue in queues:
                _reset(queue)

    @contextlib.contextmanager
    def subscribe(self, store_id: str) -> Iterator[asyncio.Queue[Message]]:
        queue: asyncio.Queue[Message] = asyncio.Queue(QUEUE_LIMIT)
        self._subscribers.setdefault(store_id, set()).add(queue)
        try:
            yield queue
        finally:
            queues = self._subscribers.get(store_id)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self._subscribers[store_id]


def _reset(queue: asyncio.Queue[Message]) -> None:
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait({"kind": "resync"})


def message_for(envelope: Envelope[EventPayload]) -> Message | None:
    """What a console needs to know about one event (None: nothing)."""
    payload = envelope.payload
    at = envelope.occurred_at.isoformat()
    if isinstance(payload, BookingConfirmed):
        booking = booking_from_doc(confirmed_doc(envelope)).model_dump(mode="json")
        return {"kind": "booking", "event": envelope.type, "at": at, "booking": booking}
    if isinstance(payload, MessageRouted):
        return {"kind": "message", "at": at, "message": payload.model_dump(mode="json")}
    if isinstance(payload, _SILENT):
        return None
    change = change_for(envelope)
    if change is not None:
        return {
            "kind": "change",
            "event": envelope.type,
            "at": at,
            "booking_id": change.booking_id,
            "set": orjson.loads(orjson.dumps(change.set)),
        }
    # waitlist, offers, exam results: the console reloads the affected list
    return {"kind": "event", "event": envelope.type, "at": at}


class LiveFeed:
    def __init__(
        self,
        settings: ServiceSettings,
        hub: LiveHub,
        directory: StoreDirectory,
    ) -> None:
        self.settings = settings
        self.hub = hub
        self.directory = directory
        self.directory_loaded = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(
            consume_forever(
                self._make, self._consume, what="live_feed", on_disconnect=self.hub.resync_all
            ),
            name="live-feed",
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def wait_loaded(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self.directory_loaded.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def _make(self) -> AIOKafkaConsumer:
        return make_consumer(
            self.settings,
            group_id=None,
            client_id=f"{self.settings.service_name}-live",
            fetch_max_wait_ms=100,
        )

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        roster = await topic_partitions(self.settings, ROSTER_EVENTS)
        live = await topic_partitions(self.settings, MESSAGES_ROUTED)
        consumer.assign([*roster, *live])
        await consumer.seek_to_beginning(*roster)
        await consumer.seek_to_end(*live)
        roster_end = await consumer.end_offsets(roster)
        behind = {tp for tp, end in roster_end.items() if end > 0}
        if not behind:
            self.directory_loaded.set()
        log.info("live_feed_started", roster_partitions=len(roster), live_partitions=len(live))
        while True:
            batch = await consumer.getmany(timeout_ms=1000, max_records=2000)
            for tp, records in batch.items():
                for record in records:
                    self._handle(tp.topic, record.key, record.value, record.headers)
                if tp in behind and records and records[-1].offset + 1 >= roster_end[tp]:
                    behind.discard(tp)
            if behind:
                # read_committed may skip transaction markers at the end: compare positions
                for tp in list(behind):
                    if await consumer.position(tp) >= roster_end[tp]:
                        behind.discard(tp)
            if not behind and not self.directory_loaded.is_set():
                self.directory_loaded.set()
                log.info("store_directory_loaded", stores=len(self.directory.stores))

    def booking_event(self, key: bytes | None, value: bytes | None, headers: Any) -> None:
        """A record of `booking.events.v1` (from the reply waiter's consumer)."""
        self._handle(BOOKING_EVENTS, key, value, headers)

    def _handle(self, topic: str, key: bytes | None, value: bytes | None, headers: Any) -> None:
        if topic != ROSTER_EVENTS and not self._wanted(topic, key, value):
            return
        try:
            envelope = decode(value, headers)
        except DecodeError as exc:
            log.warning("live_feed_undecodable", topic=topic, error=str(exc))
            return
        if topic == ROSTER_EVENTS:
            self.directory.apply(envelope.store_id, envelope.payload)
            return
        try:
            message = message_for(envelope)
        except Exception:  # one odd record must not stop the feed
            log.exception("live_feed_message_failed", type=envelope.type)
            return
        if message is not None:
            self.hub.publish(envelope.store_id, message)

    def _wanted(self, topic: str, key: bytes | None, value: bytes | None) -> bool:
        """Only records of stores someone watches are decoded: booking events are keyed by
        store id; for routed messages (keyed by conversation), peek at the JSON."""
        if topic == BOOKING_EVENTS:
            return key is not None and self.hub.has_subscribers(key.decode("utf-8", "replace"))
        try:
            head = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            return False
        store_id = head.get("store_id") if isinstance(head, dict) else None
        return isinstance(store_id, str) and self.hub.has_subscribers(store_id)


def sse_frame(message: Message) -> bytes:
    kind = message.get("kind", "message")
    data: bytes = orjson.dumps(message)
    return b"event: " + str(kind).encode() + b"\ndata: " + data + b"\n\n"
