"""The notify worker: one aiokafka consumer group over booking, roster and inbound-message
topics (a plain loop: commit after handling, partitions concurrently, records of a partition
in order), the scheduler for due reminders and retries, and the inbound message router."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from optisync_common.clock import Clock, SystemClock
from optisync_common.dlq import dead_letter
from optisync_common.kafka import EventPublisher, consume_forever, make_consumer
from optisync_common.logging import get_logger
from optisync_common.metrics import count_consumed
from optisync_common.resources import NotReady, Resources
from schemas.envelope import Envelope, deterministic_event_id
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
from schemas.events.feedback import FeedbackReceived
from schemas.events.messages import MessageReceived, MessageRouted
from schemas.events.notify import NotificationKind
from schemas.events.roster import ExamTypeDefined, StoreRegistered
from schemas.registry import (
    BOOKING_EVENTS,
    MESSAGES_INBOUND,
    ROSTER_EVENTS,
    UnknownTopicError,
    dlq_topic_for,
    local_topic_name,
    subscription_pattern,
)
from schemas.serde import DecodeError, decode
from services.notify.adapters.dispatcher import Dispatcher
from services.notify.adapters.metrics import EVENT_TO_ADAPTER, NOTIFICATIONS_QUEUED
from services.notify.adapters.storage import (
    Doc,
    DueIndex,
    NotifyRepository,
    Remembered,
    notification_doc,
)
from services.notify.domain.model import StoreProfile
from services.notify.domain.offers import (
    OFFER_EVENTS,
    WaitlistContact,
    contact_from_joined,
    offer_notification_id,
    plan_offer,
)
from services.notify.domain.planner import Policy, booking_id_of, plan
from services.notify.domain.routing import RoutingRule, parse_rating, route
from services.notify.settings import NotifySettings

log = get_logger(__name__)

STORE_CACHE_S = 30.0
CONTACTS_CACHED = 50_000  # waitlist contacts kept in memory (least recently used dropped)
WAITLIST_EVENTS = (
    WaitlistJoined,
    WaitlistLeft,
    SlotOffered,
    OfferTaken,
    OfferExpired,
    OfferDeclined,
)
# Events about bookings that never got a confirmation: nothing to tell anyone.
QUIET_WITHOUT_CONTEXT = {"BookingRejected", "CommandFailed", "BookingCheckedIn", "BookingNoShow"}

TOPIC_PATTERN = "|".join(
    [
        f"^{re.escape(BOOKING_EVENTS)}$",
        f"^{re.escape(MESSAGES_INBOUND)}$",
        f"(?:{subscription_pattern(ROSTER_EVENTS)})",
    ]
)


class Record(Protocol):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


MAX_IN_FLIGHT = 256  # bounds MongoDB write concurrency when working off a backlog
COMMIT_EVERY_S = 0.1


class Pipeline:
    """Records in flight: a task per record, chained per order key; per partition the offsets
    not yet handled, so commits never pass an unhandled record."""

    def __init__(self, handle: Callable[[Record, Envelope[EventPayload]], Awaitable[None]]) -> None:
        self._handle = handle
        self._tails: dict[str, asyncio.Task[None]] = {}
        self._pending: dict[TopicPartition, set[int]] = {}
        self._next: dict[TopicPartition, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(
        self, tp: TopicPartition, record: Record, envelope: Envelope[EventPayload], key: str
    ) -> None:
        self._pending.setdefault(tp, set()).add(record.offset)
        self._next[tp] = record.offset + 1
        previous = self._tails.get(key)
        task = asyncio.create_task(self._run(previous, record, envelope))
        self._tails[key] = task
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            self._pending[tp].discard(record.offset)
            if self._tails.get(key) is finished:
                del self._tails[key]

        task.add_done_callback(done)

    def skip(self, tp: TopicPartition, offset: int) -> None:
        self._next[tp] = offset + 1

    async def _run(
        self, previous: asyncio.Task[None] | None, record: Record, envelope: Envelope[EventPayload]
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        await self._handle(record, envelope)

    def forget_unassigned(self, assigned: set[TopicPartition]) -> None:
        """A revoked partition's position is someone else's now: never commit it (were it
        assigned back, committing our older position would rewind the group)."""
        for tp in [tp for tp in self._next if tp not in assigned]:
            del self._next[tp]

    def committable(self) -> dict[TopicPartition, int]:
        return {
            tp: min(self._pending[tp]) if self._pending.get(tp) else next_offset
            for tp, next_offset in self._next.items()
        }

    async def wait_below(self, limit: int) -> None:
        while len(self._tasks) >= limit:
            await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)

    async def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def order_key(envelope: Envelope[EventPayload]) -> str:
    """What must be handled in order: a waitlist entry's events, a booking's, a conversation's
    messages; anything else in store order."""
    payload = envelope.payload
    for name in ("waitlist_entry_id", "booking_id", "conversation_id"):
        value = getattr(payload, name, None)
        if isinstance(value, str):
            return f"{name}:{value}"
    return f"store:{envelope.store_id}"


class EventHandler:
    """What one decoded event means for notify."""

    def __init__(
        self,
        settings: NotifySettings,
        repo: NotifyRepository,
        dispatcher: Dispatcher,
        publisher: EventPublisher,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.dispatcher = dispatcher
        self.publisher = publisher
        self.clock = clock
        self.policy = Policy(
            reminder_offsets_min=settings.reminder_offsets_min,
            reminder_min_notice=dt.timedelta(minutes=settings.reminder_min_notice_min),
            feedback_delay=dt.timedelta(seconds=settings.feedback_delay_s),
            max_event_age=dt.timedelta(seconds=settings.max_event_age_s),
        )
        self._rules: tuple[float, list[RoutingRule]] = (0.0, [])
        self._stores: dict[str, tuple[float, StoreProfile | None]] = {}
        self._contacts: OrderedDict[str, WaitlistContact] = OrderedDict()

    async def handle(self, topic: str, envelope: Envelope[EventPayload]) -> None:
        payload = envelope.payload
        if topic == BOOKING_EVENTS:
            if isinstance(payload, WAITLIST_EVENTS):
                await self.on_waitlist_event(envelope)
            else:
                await self.on_booking_event(envelope)
        elif topic == ROSTER_EVENTS:
            if isinstance(payload, StoreRegistered):
                await self.repo.upsert_store(
                    payload.store_id,
                    timezone=payload.timezone,
                    locale=payload.locale,
                    name=payload.name,
                )
            elif isinstance(payload, ExamTypeDefined):
                await self.repo.upsert_exam_type(envelope.store_id, payload.code, payload.name)
        elif topic == MESSAGES_INBOUND and isinstance(payload, MessageReceived):
            await self.on_message(envelope, payload)

    async def on_booking_event(self, envelope: Envelope[EventPayload]) -> None:
        booking_id = booking_id_of(envelope.payload)
        if booking_id is None:
            return
        # A confirmation carries its whole context; every later event needs what we kept.
        known = Remembered()
        if not isinstance(envelope.payload, BookingConfirmed):
            known = await self.repo.context(booking_id)
        now = self.clock.now()
        result = plan(
            envelope, known.context, await self.store(envelope.store_id), self.policy, now
        )
        if result.missing_context:
            if envelope.type not in QUIET_WITHOUT_CONTEXT:
                log.warning("no_booking_context", booking_id=booking_id, type=envelope.type)
            return
        first_time = str(envelope.event_id) not in known.applied
        reminders = known.reminders or []
        if first_time and result.context is not None:
            if result.drop_reminders:
                reminders = await self.repo.drop_reminders(
                    booking_id, known.reminders, result.keep_reminders_for
                )
            if result.awaits_rating:
                await self.repo.open_rating_request(
                    result.context, str(result.context.channel), now
                )
        immediate = [notification_doc(n, now) for n in result.notifications if n.due_at <= now]
        later = [notification_doc(n, now) for n in result.notifications if n.due_at > now]
        listed = {r["id"] for r in reminders}
        reminders = reminders + [
            {"id": d["_id"], "slot_start": d["slot_start"]}
            for d in later
            if d["kind"] == "reminder" and d["_id"] not in listed
        ]
        await self._send(envelope, immediate, later)
        if first_time and result.context is not None:
            if isinstance(envelope.payload, BookingConfirmed):
                await self.repo.add_context(result.context, str(envelope.event_id), reminders)
            else:
                await self.repo.save_context(result.context, str(envelope.event_id), reminders)

    async def _send(
        self, envelope: Envelope[EventPayload], immediate: list[Doc], later: list[Doc]
    ) -> None:
        """Send what is due now (claimed in Redis), then store it with what is due later."""
        attempted, claimed = await self.dispatcher.deliver_fresh(immediate, envelope.occurred_at)
        if attempted:
            EVENT_TO_ADAPTER.observe(
                max(0.0, (self.clock.now() - envelope.occurred_at).total_seconds())
            )
        existing = await self.repo.store_notifications(attempted + later)
        for doc in attempted:
            if doc["_id"] in existing and doc["_id"] in claimed:
                # stored (deferred) meanwhile by an instance that saw our claim: ours wins
                await self.repo.record_outcome(doc)
        await self.dispatcher.settle([d for d in attempted if d["_id"] in claimed])
        for doc in attempted + later:
            if doc["_id"] not in existing:
                NOTIFICATIONS_QUEUED.labels(doc["kind"]).inc()

    async def on_waitlist_event(self, envelope: Envelope[EventPayload]) -> None:
        """Remember who joined a waitlist; tell them about offers made to them."""
        payload = envelope.payload
        if isinstance(payload, WaitlistJoined):
            joined = contact_from_joined(envelope, payload)
            await self.repo.save_waitlist_contact(joined)
            self._remember_contact(joined)
            return
        if isinstance(payload, WaitlistLeft):
            await self.repo.waitlist_left(
                payload.waitlist_entry_id, payload.reason, self.clock.now()
            )
            return
        if not isinstance(payload, OFFER_EVENTS):
            return  # OfferDeclined: the customer said so themselves
        contact = await self.contact(payload.waitlist_entry_id)
        if contact is None:
            entry_id = payload.waitlist_entry_id
            log.warning("no_waitlist_context", waitlist_entry_id=entry_id, type=envelope.type)
            return
        offered_slot = None
        if isinstance(payload, OfferTaken):  # carries no time: the offer's message has it
            offer = await self.repo.get(
                offer_notification_id(
                    payload.offer_token,
                    NotificationKind.WAITLIST_OFFER,
                    contact.recipient.customer_ref,
                )
            )
            offered_slot = (offer or {}).get("slot_start")
        now = self.clock.now()
        notification = plan_offer(
            envelope,
            contact,
            await self.store(envelope.store_id),
            now=now,
            max_event_age=self.policy.max_event_age,
            public_booking_url=self.settings.public_booking_url,
            offered_slot=offered_slot,
        )
        if notification is not None:
            await self._send(envelope, [notification_doc(notification, now)], [])

    async def contact(self, entry_id: str) -> WaitlistContact | None:
        """The entry's contact: kept in memory when this instance saw it join (the same
        partition brings its offers), else one MongoDB read by `_id` (a read on FerretDB
        costs milliseconds of its single writer's time: not one per offer)."""
        contact = self._contacts.get(entry_id)
        if contact is not None:
            self._contacts.move_to_end(entry_id)
            return contact
        contact = await self.repo.waitlist_contact(entry_id)
        if contact is not None:
            self._remember_contact(contact)
        return contact

    def _remember_contact(self, contact: WaitlistContact) -> None:
        self._contacts[contact.entry_id] = contact
        self._contacts.move_to_end(contact.entry_id)
        while len(self._contacts) > CONTACTS_CACHED:
            self._contacts.popitem(last=False)

    async def store(self, store_id: str) -> StoreProfile | None:
        """Store profiles change rarely (roster events, the config API): a few seconds' cache."""
        cached = self._stores.get(store_id)
        if cached is not None and time.monotonic() - cached[0] < STORE_CACHE_S:
            return cached[1]
        profile = await self.repo.store(store_id)
        self._stores[store_id] = (time.monotonic(), profile)
        return profile

    async def rules(self) -> list[RoutingRule]:
        # Rules are edited through the API; a second-old copy is fresh enough.
        loaded_at, rules = self._rules
        if time.monotonic() - loaded_at > 1.0:
            rules = await self.repo.routing_rules()
            self._rules = (time.monotonic(), rules)
        return rules

    async def on_message(self, envelope: Envelope[EventPayload], msg: MessageReceived) -> None:
        now = self.clock.now()
        rating = parse_rating(msg.text)
        if rating is not None:
            since = now - dt.timedelta(hours=self.settings.feedback_reply_window_h)
            request = await self.repo.take_rating_request(msg.customer_ref, since)
            if request is not None:
                store = await self.repo.store(request["store_id"])
                tz = store.timezone if store else "UTC"
                feedback = FeedbackReceived(
                    booking_id=request["_id"],
                    store_id=request["store_id"],
                    rating=rating[0],
                    comment_present=rating[1],
                    local_date=msg.received_at.astimezone(ZoneInfo(tz)).date(),
                    channel=msg.channel,
                    exam_type=request.get("exam_type"),
                )
                await self.publisher.publish(
                    envelope.derive(
                        feedback,
                        occurred_at=now,
                        store_id=request["store_id"],
                        event_id=deterministic_event_id("feedback", msg.message_id),
                    )
                )
                return
        decision = route(msg.text, msg.locale, await self.rules())
        routed = MessageRouted(
            conversation_id=msg.conversation_id,
            message_id=msg.message_id,
            channel=msg.channel,
            customer_ref=msg.customer_ref,
            store_id=msg.store_id,
            locale=msg.locale,
            text=msg.text,
            role=decision.role,
            rule_id=decision.rule_id,
            matched_keyword=decision.keyword,
        )
        await self.publisher.publish(
            envelope.derive(
                routed, occurred_at=now, event_id=deterministic_event_id("routed", msg.message_id)
            )
        )


class NotifyWorker:
    """Consumer task + scheduler task inside the worker process (or a test)."""

    def __init__(
        self,
        settings: NotifySettings,
        *,
        clock: Clock | None = None,
        group_id: str | None = None,
        auto_offset_reset: str | None = None,
        scheduler: bool = True,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.group_id = group_id or settings.consumer_group
        self.auto_offset_reset = auto_offset_reset or settings.consumer_offset_reset
        self.scheduler = scheduler
        self._dispatcher: Dispatcher | None = None
        self.handler: EventHandler | None = None
        self._resources: Resources | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._assigned = asyncio.Event()

    async def start(self, resources: Resources) -> None:
        if resources.redis is None or resources.producer is None:
            raise NotReady("notify needs Redis and Kafka")
        self._resources = resources
        repo = NotifyRepository(
            resources.db, DueIndex.of(resources.redis, self.settings.redis_prefix)
        )
        await repo.ensure_indexes()
        if self.scheduler:
            started = time.monotonic()
            count = await repo.rebuild_schedule()
            log.info(
                "due_index_rebuilt",
                pending=count,
                seconds=round(time.monotonic() - started, 3),
            )
        producer = resources.producer

        def get_producer() -> AIOKafkaProducer:
            return producer

        self._dispatcher = Dispatcher(
            self.settings, repo, resources.redis, get_producer, self.clock
        )
        self.handler = EventHandler(
            self.settings, repo, self.dispatcher, EventPublisher(producer), self.clock
        )
        self._stop.clear()
        self._tasks.append(asyncio.create_task(self._run(), name="notify-consumer"))
        if self.scheduler:
            self._tasks.append(
                asyncio.create_task(
                    self.dispatcher.run_scheduler(self._stop), name="notify-scheduler"
                )
            )

    @property
    def dispatcher(self) -> Dispatcher:
        if self._dispatcher is None:
            raise NotReady("start() the worker first")
        return self._dispatcher

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._dispatcher is not None:
            await self._dispatcher.adapters.close()
            await self._dispatcher.repo.close()

    async def check(self) -> None:
        if not self._tasks or any(t.done() for t in self._tasks) or self._consumer is None:
            raise NotReady("notify consumer is not running")
        if not self._assigned.is_set():
            raise NotReady("notify consumer has no partitions yet")

    async def wait_assigned(self, within_s: float = 60.0) -> None:
        await asyncio.wait_for(self._assigned.wait(), within_s)

    async def _run(self) -> None:
        assert self._resources is not None
        await self._resources.wait_for_kafka(60)

        def make() -> AIOKafkaConsumer:
            return make_consumer(
                self.settings,
                group_id=self.group_id,
                pattern=TOPIC_PATTERN,
                auto_offset_reset=self.auto_offset_reset,
                client_id=f"{self.settings.service_name}-worker",
                max_poll_interval_ms=300000,
            )

        async def consume(consumer: AIOKafkaConsumer) -> None:
            self._consumer = consumer
            await self._consume(consumer)

        def disconnected() -> None:
            self._consumer = None
            self._assigned.clear()

        await consume_forever(make, consume, what="notify", on_disconnect=disconnected)

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        """Pipelined: records are handed to tasks as they arrive (in order per booking via a
        chain of tasks, bookings concurrently), so nothing waits for a batch to finish. The
        committed offset of a partition is its oldest record still in flight."""
        pipeline = Pipeline(self._handle_with_retry)
        last_commit = 0.0
        try:
            while True:
                batch: dict[TopicPartition, list[Record]] = await consumer.getmany(
                    timeout_ms=20, max_records=500
                )
                if not self._assigned.is_set() and consumer.assignment():
                    for tp in consumer.assignment():
                        await consumer.position(tp)
                    self._assigned.set()
                for tp, records in batch.items():
                    for record in records:
                        await self._dispatch(pipeline, tp, record)
                await pipeline.wait_below(MAX_IN_FLIGHT)
                if time.monotonic() - last_commit >= COMMIT_EVERY_S:
                    last_commit = time.monotonic()
                    await self._commit(consumer, pipeline)
        finally:
            await pipeline.cancel()

    async def _dispatch(self, pipeline: Pipeline, tp: TopicPartition, record: Record) -> None:
        try:
            envelope = decode(record.value, record.headers)
        except DecodeError as exc:
            await self._reject(record, exc)
            pipeline.skip(tp, record.offset)
            return
        pipeline.submit(tp, record, envelope, order_key(envelope))

    async def _commit(self, consumer: AIOKafkaConsumer, pipeline: Pipeline) -> None:
        assigned = consumer.assignment()
        pipeline.forget_unassigned(assigned)
        offsets = pipeline.committable()
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except Exception as exc:  # rebalanced meanwhile: the new owner re-handles (idempotent)
            log.warning("notify_commit_failed", error=repr(exc))

    async def _handle_with_retry(self, record: Record, envelope: Envelope[EventPayload]) -> None:
        """Infrastructure trouble (MongoDB, Redis, Kafka down): retry this record with backoff;
        the booking's later events wait behind it and its offset is not committed past."""
        backoff = 0.2
        while True:
            try:
                await self._handle(record, envelope)
                return
            except Exception as exc:
                log.error(
                    "notify_handling_failed",
                    topic=record.topic,
                    offset=record.offset,
                    partition=record.partition,
                    error=repr(exc),
                    retry_in=backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _handle(self, record: Record, envelope: Envelope[EventPayload]) -> None:
        assert self.handler is not None
        topic = local_topic_name(record.topic)
        count_consumed(self.settings.service_name, record.topic, envelope.type)
        await self.handler.handle(topic, envelope)

    async def _reject(self, record: Record, error: Exception) -> None:
        try:
            dlq_topic_for(record.topic)
        except UnknownTopicError:
            log.error("notify_record_skipped", topic=record.topic, error=str(error))
            return
        assert self._resources is not None
        await dead_letter(
            self._resources.publisher,
            record,
            service=self.settings.service_name,
            region=self.settings.region,
            error=error,
            now=self.clock.now(),
        )
