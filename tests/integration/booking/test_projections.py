"""The projector against the real broker, Redis and FerretDB: exact contents, stale and
redelivered events, dead letters, and a rebuild that reproduces the projections."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition

from optisync_common.clock import SystemClock
from optisync_common.kafka import make_consumer
from schemas.envelope import Envelope, new_envelope
from schemas.events.availability import ExamTypeSlots, StoreDayAvailability
from schemas.events.base import EventPayload, RejectionReason
from schemas.events.booking import BookingCancelled, BookingConfirmed, BookingRejected, Customer
from schemas.events.dlq import DeadLetter
from schemas.events.roster import ExamTypeDefined
from schemas.registry import AVAILABILITY, BOOKING_EVENTS, ROSTER_EVENTS, dlq_topic_for
from schemas.serde import decode, encode
from services.booking.adapters.bookings import BookingRepository
from services.booking.adapters.projections import (
    VIEWS_PATTERN,
    ProjectionWriter,
    Projector,
    ProjectorRunning,
    RecordHandler,
    Unprojectable,
    apply_batch,
    rebuild,
)
from services.booking.adapters.replies import topic_partitions
from services.booking.adapters.views import RedisViews
from tests.integration.booking.helpers import TZ, eventually


def view(store, seq: int, starts: list[str]) -> StoreDayAvailability:
    return StoreDayAvailability(
        store_id=store.store_id, local_date=store.day, timezone=TZ, slot_minutes=15,
        exam_types={"std": ExamTypeSlots(
            duration_minutes=30, free_starts=starts, free_count=len(starts)
        )},
        computed_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), seq=seq,
    )  # fmt: skip


Snapshot = tuple[bytes | None, bytes | None, list[dict[str, Any]]]


async def snapshot(resources, views, store) -> Snapshot:
    repo = BookingRepository(resources.db)
    docs = [d async for d in repo.coll.find({"store_id": store.store_id}).sort("_id", 1)]
    return (
        await resources.redis.get(views.store_key(store.store_id)),
        await views.view(store.store_id, store.day),
        docs,
    )


async def test_projections_are_exact_idempotent_and_rebuilt_identically(
    bus, store, views, resources, booking_settings
):
    sid = store.store_id
    catalog = orjson.loads(await resources.redis.get(views.store_key(sid)))
    assert catalog == {
        "timezone": TZ,
        "opening_hours": {
            d: [{"open": "09:00", "close": "18:00"}]
            for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        },
        "slot_minutes": 15,
        "locale": "en",
        "closed_dates": [],
        "hours_changes": [],
        "exam_types": {
            "std": {"duration_minutes": 30, "required_skill": "general", "active": True},
            "long": {"duration_minutes": 60, "required_skill": "general", "active": True},
        },
    }

    # Availability: seq 2, then a stale seq 1 that must not win.
    newer = view(store, 2, ["09:00", "09:30"])
    _, meta = await bus.publish(newer, sid)
    await bus.projected(meta)
    _, meta = await bus.publish(view(store, 1, ["10:00"]), sid)
    await bus.projected(meta)
    assert await views.view(sid, store.day) == orjson.dumps(newer.model_dump(mode="json"))
    assert await resources.redis.ttl(views.view_key(sid, store.day)) > 0

    # A booking confirmed, then cancelled, and the cancellation delivered twice.
    start = store.at("09:00").astimezone(dt.UTC)
    confirmed, _ = await bus.publish(
        BookingConfirmed(
            booking_id=f"b-{sid}", idempotency_key="key-1", channel="wechat", exam_type="std",
            customer=Customer(
                customer_ref="cust-1", name="Wang Fang", phone="+86 138", locale="zh-CN"
            ),
            optometrist_id="o1", slot_start=start, slot_end=start + dt.timedelta(minutes=30),
            local_start=store.at("09:00").isoformat(), timezone=TZ,
        ),
        sid,
    )  # fmt: skip
    cancelled, _ = await bus.publish(
        BookingCancelled(
            booking_id=f"b-{sid}", idempotency_key="key-2", customer_ref="cust-1", by="store",
            reason="optometrist ill", late=True, minutes_before_start=30, exam_type="std",
            optometrist_id="o1", slot_start=start, local_start=store.at("09:00").isoformat(),
        ),
        sid,
    )  # fmt: skip
    _, meta = await bus.publish(cancelled.payload, sid, envelope=cancelled)  # redelivery
    rejected, _ = await bus.publish(
        BookingRejected(
            booking_id=f"r-{sid}", idempotency_key="key-3", reason=RejectionReason.SLOT_TAKEN
        ),
        sid,
    )
    _, meta = await bus.publish(rejected.payload, sid, envelope=rejected)
    await bus.projected(meta)

    repo = BookingRepository(resources.db)
    assert await repo.get(f"r-{sid}") is None  # rejections are not bookings
    doc = await repo.get(f"b-{sid}")
    c_id, x_id = str(confirmed.event_id), str(cancelled.event_id)
    assert doc == {
        "_id": f"b-{sid}",
        "store_id": sid,
        "customer_ref": "cust-1",
        "customer": {"name": "Wang Fang", "phone": "+86 138", "locale": "zh-CN"},
        "channel": "wechat",
        "exam_type": "std",
        "optometrist_id": "o1",
        "slot_start": start,
        "slot_end": start + dt.timedelta(minutes=30),
        "local_start": store.at("09:00").isoformat(),
        "timezone": TZ,
        "status": "cancelled",
        "idempotency_key": "key-1",
        "waitlist_entry_id": None,
        "created_at": confirmed.occurred_at,
        "updated_at": cancelled.occurred_at,
        "last_event_id": x_id,
        "applied_event_ids": [c_id, x_id],
        "history": [
            {"event": "confirmed", "event_id": c_id, "at": confirmed.occurred_at,
             "slot_start": start, "optometrist_id": "o1"},
            {"event": "cancelled", "event_id": x_id, "at": cancelled.occurred_at, "by": "store",
             "reason": "optometrist ill", "late": True},
        ],
    }  # fmt: skip

    # Rebuild: break the projections, replay this store from the topics, get them back exactly.
    before = await snapshot(resources, views, store)
    await repo.coll.update_one({"_id": f"b-{sid}"}, {"$set": {"status": "bogus"}})
    await resources.redis.delete(views.store_key(sid), views.view_key(sid, store.day))
    lines: list[str] = []
    report = await rebuild(booking_settings, store_id=sid, out=lines.append)
    assert await snapshot(resources, views, store) == before
    assert report.skipped == [] and report.dropped_documents == 1 and report.dropped_keys == 0
    assert any("replaying" in line for line in lines) and "done" in lines[-1]


async def test_a_rebuild_is_refused_while_the_live_projector_runs(
    bus, store, views, resources, booking_settings, projector
):
    """Beside a live projector, a rebuild lost changes (one applied to a document the replay
    had not written yet) and undid others (an older event replayed after a newer one)."""
    _, meta = await bus.publish(view(store, 2, ["09:00"]), store.store_id)
    await bus.projected(meta)
    before = await snapshot(resources, views, store)
    with pytest.raises(ProjectorRunning, match=projector.group_id):
        await rebuild(booking_settings, store_id=store.store_id, live_groups=[projector.group_id])
    assert await snapshot(resources, views, store) == before  # nothing dropped


async def test_undecodable_records_are_dead_lettered_and_the_projector_keeps_going(
    bus, store, views, resources, booking_settings
):
    sid = store.store_id
    dlq = make_consumer(booking_settings, group_id=None)
    partitions = await topic_partitions(booking_settings, dlq_topic_for(ROSTER_EVENTS))
    await dlq.start()
    try:
        dlq.assign(partitions)
        for tp, offset in (await dlq.end_offsets(partitions)).items():
            dlq.seek(tp, offset)
        producer = resources.producer
        await producer.send_and_wait(ROSTER_EVENTS, key=sid.encode(), value=b"{not json")
        # availability.v1 has no DLQ: logged and skipped
        key = f"{sid}:{store.day.isoformat()}".encode()
        await producer.send_and_wait(AVAILABILITY, key=key, value=b"\xff")
        async with asyncio.timeout(15):
            async for record in dlq:
                if record.key == sid.encode():
                    break
    finally:
        await dlq.stop()
    letter = decode(record.value, record.headers).payload
    assert isinstance(letter, DeadLetter)
    assert letter.original_value() == b"{not json" and letter.original_topic == ROSTER_EVENTS

    # Both partitions move on: later events of the store are still projected.
    await bus.publish(
        ExamTypeDefined(code="kids", name="k", duration_minutes=45, required_skill="paediatric"),
        sid,
    )
    _, meta = await bus.publish(view(store, 5, ["11:00"]), sid)
    await bus.projected(meta)

    async def kids_known() -> bool:
        catalog = await views.catalog(sid)
        return catalog is not None and "kids" in catalog.exam_types

    await eventually(kids_known)
    assert orjson.loads(await views.view(sid, store.day) or b"")["seq"] == 5


async def test_a_retired_days_tombstone_is_passed_over(store, views, resources):
    """The processor retires a day past its retention with a tombstone on availability.v1:
    the projector passes over it (nothing to reject) and goes on with the next view."""
    sid = store.store_id
    rejected: list[int] = []

    async def reject(record: Any, error: Exception) -> None:
        rejected.append(record.offset)

    repo = BookingRepository(resources.db)
    handler = RecordHandler(ProjectionWriter(repo, views, SystemClock()), "test", reject)
    later = encode(
        new_envelope(
            view(store, 7, ["11:00"]), region="eu", store_id=sid, correlation_id="v",
            occurred_at=dt.datetime.now(dt.UTC),
        )
    )  # fmt: skip
    records = [
        FetchedRecord(AVAILABILITY, 0, 40, later.key, None, []),
        FetchedRecord(AVAILABILITY, 0, 41, later.key, later.value, list(later.headers)),
    ]
    assert await handler(records) == (42, None)
    assert rejected == [] and handler.applied == 1
    assert orjson.loads(await views.view(sid, store.day) or b"")["seq"] == 7


@dataclass
class FetchedRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    timestamp: int = 0


def confirmed_event(store, booking_id: str, key: str) -> Envelope[EventPayload]:
    start = store.at("09:00").astimezone(dt.UTC)
    return new_envelope(
        BookingConfirmed(
            booking_id=booking_id, idempotency_key=key, channel="web", exam_type="std",
            customer=Customer(customer_ref=f"c-{booking_id}", locale="en"),
            optometrist_id="o1", slot_start=start, slot_end=start + dt.timedelta(minutes=30),
            local_start=store.at("09:00").isoformat(), timezone=TZ,
        ),
        region="eu", store_id=store.store_id, correlation_id=booking_id,
        occurred_at=dt.datetime.now(dt.UTC),
    )  # fmt: skip


def fetched(
    events: Sequence[Envelope[Any]], partition: int, first_offset: int
) -> list[FetchedRecord]:
    records = []
    for offset, envelope in enumerate(events, start=first_offset):
        message = encode(envelope)
        records.append(FetchedRecord(BOOKING_EVENTS, partition, offset, message.key,
                                     message.value, list(message.headers)))  # fmt: skip
    return records


async def test_a_run_of_new_bookings_is_one_insert_and_each_keeps_its_own_outcome(
    store, views, resources
):
    """New bookings in a row are inserted together; a redelivered one, one whose idempotency
    key an older booking holds (the processor's 24 h had passed: it takes the key over), one
    whose key a newer booking holds (dead-lettered) and a change in between each still end as
    they would one by one, in the partition's order."""
    sid = store.store_id
    start = store.at("09:00").astimezone(dt.UTC)
    now = dt.datetime.now(dt.UTC)

    def confirmed(booking_id: str, key: str) -> Envelope[EventPayload]:
        return confirmed_event(store, booking_id, key)

    a, b, c, d, e = (f"{n}-{sid}" for n in "abcde")
    first_a = confirmed(a, "k-a")
    cancel_b = new_envelope(
        BookingCancelled(
            booking_id=b, idempotency_key="k-x", customer_ref=f"c-{b}", by="customer",
            late=False, minutes_before_start=600, exam_type="std", optometrist_id="o1",
            slot_start=start, local_start=store.at("09:00").isoformat(),
        ),
        region="eu", store_id=sid, correlation_id="x", occurred_at=now,
    )  # fmt: skip
    made_a_day_before_d = replace_occurred(confirmed(e, "k-d"), now - dt.timedelta(days=1))
    events: list[Envelope[Any]] = [
        first_a, confirmed(b, "k-b"), first_a, confirmed(c, "k-a"), cancel_b, confirmed(d, "k-d"),
        made_a_day_before_d,
    ]  # fmt: skip
    records = fetched(events, partition=0, first_offset=100)
    rejected: list[tuple[int, Exception]] = []

    async def reject(record: Any, error: Exception) -> None:
        rejected.append((record.offset, error))

    repo = BookingRepository(resources.db)
    handler = RecordHandler(ProjectionWriter(repo, views, SystemClock()), "test", reject)
    assert await handler(records) == (107, None)
    assert [(offset, type(error)) for offset, error in rejected] == [(106, Unprojectable)]
    docs = {doc["_id"]: doc async for doc in repo.coll.find({"store_id": sid})}
    assert {i: doc["status"] for i, doc in docs.items()} == {
        a: "confirmed", b: "cancelled", c: "confirmed", d: "confirmed"
    }  # fmt: skip
    assert (docs[c]["idempotency_key"], docs[a]["released_idempotency_key"]) == ("k-a", "k-a")
    assert docs[a]["idempotency_key"] != "k-a"
    assert handler.applied == 5  # a, b, c, b's cancellation, d
    assert await handler(records) == (107, None)  # the whole run redelivered: nothing changes
    assert handler.applied == 5 and len(rejected) == 2


def replace_occurred(envelope: Envelope[Any], at: dt.datetime) -> Envelope[Any]:
    return envelope.model_copy(update={"occurred_at": at})


async def test_partitions_applied_together_write_their_new_bookings_in_one_insert(
    store, views, resources
):
    """Three partitions' runs of new bookings go to MongoDB in one write, and each partition
    still gets its own outcomes: the one whose booking reuses the idempotency key of a newer
    booking has it dead-lettered, the others commit past all their records."""
    sid = store.store_id
    repo = BookingRepository(resources.db)
    writes: list[int] = []
    insert_confirmed = repo.insert_confirmed

    async def counted(envelopes: Sequence[Envelope[EventPayload]]) -> list[Any]:
        writes.append(len(envelopes))
        return await insert_confirmed(envelopes)

    repo.insert_confirmed = counted  # type: ignore[method-assign]
    rejected: list[tuple[int, int]] = []

    async def reject(record: Any, error: Exception) -> None:
        rejected.append((record.partition, record.offset))

    handler = RecordHandler(ProjectionWriter(repo, views, SystemClock()), "test", reject)
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    batch = {
        TopicPartition(BOOKING_EVENTS, p): fetched(
            [confirmed_event(store, f"p{p}-{n}-{sid}", f"k-{p}-{n}") for n in range(2)]
            + ([replace_occurred(confirmed_event(store, f"dup-{sid}", "k-0-0"), yesterday)]
               if p == 1 else []),
            partition=p, first_offset=10,
        )
        for p in range(3)
    }  # fmt: skip
    result = await apply_batch(batch, handler)  # type: ignore[arg-type]
    assert writes == [7]
    assert result.failed == []
    assert result.commit == {
        TopicPartition(BOOKING_EVENTS, 0): 12,
        TopicPartition(BOOKING_EVENTS, 1): 13,
        TopicPartition(BOOKING_EVENTS, 2): 12,
    }
    assert rejected == [(1, 12)]
    ids = {doc["_id"] async for doc in repo.coll.find({"store_id": sid})}
    assert ids == {f"p{p}-{n}-{sid}" for p in range(3) for n in range(2)}
    assert handler.applied == 6


async def test_partitions_views_go_to_redis_in_one_call_announced_in_one_message(
    store, views, resources, monkeypatch
):
    """Two partitions' views in one batch: one script call writes the newer ones, passes over
    a stale and an expired one, and announces the written keys in one change message, which a
    reader keeping views in memory (as the API does) acts on."""
    sid, redis = store.store_id, resources.redis
    days = [store.day + dt.timedelta(days=10 + n) for n in range(3)]

    def day_view(day: dt.date, seq: int) -> StoreDayAvailability:
        return view(store, seq, ["09:00"]).model_copy(update={"local_date": day})

    def records(partition: int, payloads: list[StoreDayAvailability]) -> list[FetchedRecord]:
        out = []
        for offset, payload in enumerate(payloads):
            message = encode(new_envelope(payload, region="eu", store_id=sid, correlation_id="v",
                                          occurred_at=dt.datetime.now(dt.UTC)))  # fmt: skip
            out.append(FetchedRecord(AVAILABILITY, partition, offset, message.key,
                                     message.value, list(message.headers)))  # fmt: skip
        return out

    assert await views.apply_availability([day_view(days[0], 5)], dt.datetime.now(dt.UTC)) == [
        "written"
    ]
    reader = RedisViews(redis, "booking:", cache=True)
    following = asyncio.create_task(reader.follow_changes())
    listener = redis.pubsub(ignore_subscribe_messages=True)
    await listener.subscribe(views.channel)
    try:

        async def cached() -> bytes | None:
            await reader.view(sid, days[0])  # fills the copy once the reader follows changes
            return reader.cached_view(sid, days[0])

        assert orjson.loads(await eventually(cached))["seq"] == 5
        calls: list[int] = []
        script = views._set_if_newer

        async def counted(keys: Sequence[str], args: Sequence[Any]) -> Any:
            calls.append(len(keys) - 1)
            return await script(keys=keys, args=args)

        monkeypatch.setattr(views, "_set_if_newer", counted)  # the views are the session's
        handler = RecordHandler(
            ProjectionWriter(BookingRepository(resources.db), views, SystemClock()), "test",
            lambda record, error: asyncio.sleep(0),
        )  # fmt: skip
        expired = day_view(dt.date(2020, 1, 1), 1)
        batch = {
            TopicPartition(AVAILABILITY, 0): records(0, [day_view(days[1], 1), expired]),
            TopicPartition(AVAILABILITY, 1): records(1, [day_view(days[2], 2),
                                                         day_view(days[0], 6)]),
        }  # fmt: skip
        result = await apply_batch(batch, handler)  # type: ignore[arg-type]
        assert result.failed == [] and calls == [3]  # the expired view is not sent
        assert result.commit == {TopicPartition(AVAILABILITY, 0): 2,
                                 TopicPartition(AVAILABILITY, 1): 2}  # fmt: skip
        assert handler.applied == 3
        older = {TopicPartition(AVAILABILITY, 1): records(1, [day_view(days[2], 1)])}
        stale = await apply_batch(older, handler)  # type: ignore[arg-type]
        assert stale.failed == [] and handler.applied == 3 and calls == [3, 1]

        async def next_message() -> Any:
            return await listener.get_message(timeout=0.2)

        announced = orjson.loads((await eventually(next_message))["data"])
        assert announced == [views.view_key(sid, day) for day in (days[1], days[2], days[0])]
        assert await listener.get_message(timeout=0.5) is None  # the stale view: no message
        assert orjson.loads(await eventually(cached))["seq"] == 6
        assert orjson.loads(await views.view(sid, days[2]) or b"")["seq"] == 2
        assert await views.view(sid, expired.local_date) is None
    finally:
        following.cancel()
        await listener.aclose()


async def test_views_redis_lost_come_back_from_the_topics_while_running_and_after_a_restart(
    bus, store, resources, booking_settings, unique_id
):
    # A views projector of its own group and key prefix: it replays every partition from its
    # start once (no marks yet), then follows. Redis then loses everything under the prefix.
    settings = booking_settings.model_copy(update={"service_name": f"refill-{unique_id}"})
    own = RedisViews(resources.redis, settings.redis_prefix)
    sid = store.store_id
    latest = view(store, 3, ["13:00", "13:15"])
    _, meta = await bus.publish(latest, sid)
    await bus.projected(meta)
    expected = orjson.dumps(latest.model_dump(mode="json"))

    async def restored() -> bool:
        catalog = await own.catalog(sid)
        return catalog is not None and await own.view(sid, store.day) == expected

    async def lose_everything() -> None:
        keys = [k async for k in resources.redis.scan_iter(match=f"{settings.redis_prefix}*")]
        assert own.filled_key().encode() in keys and await resources.redis.unlink(*keys) > 0
        assert not await restored()

    def start_projector() -> Projector:
        return Projector(
            settings, group_id=f"refill-{unique_id}", pattern=VIEWS_PATTERN, refill_every_s=0.2
        )

    projector = start_projector()
    await projector.start(resources)
    try:
        await eventually(restored, within_s=60)  # the first start replays from the start
        await lose_everything()  # e.g. Redis restarted without persistence
        await eventually(restored, within_s=60)  # no new record: only a replay brings it back
    finally:
        await projector.stop()

    await lose_everything()  # while no projector runs; its offsets are past every record
    projector = start_projector()
    await projector.start(resources)
    try:
        await eventually(restored, within_s=60)
    finally:
        await projector.stop()
        keys = [k async for k in resources.redis.scan_iter(match=f"{settings.redis_prefix}*")]
        await resources.redis.unlink(*keys)
