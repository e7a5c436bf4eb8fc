"""Produce and consume through the real broker with the shared factory and the one serde."""

from __future__ import annotations

import asyncio
import datetime as dt

from aiokafka.structs import ConsumerRecord

from optisync_common.dlq import dead_letter
from optisync_common.kafka import EventPublisher, header, make_consumer, make_producer
from schemas.envelope import new_envelope
from schemas.events.dlq import DeadLetter
from schemas.events.roster import ShiftPublished
from schemas.registry import ROSTER_EVENTS, dlq_topic_for
from schemas.serde import decode

NOW = dt.datetime(2026, 11, 25, 2, 0, tzinfo=dt.UTC)


async def _consume_until(consumer, predicate, within_s: float = 30.0):
    """Records of `consumer` until `predicate(record)` holds (fails on timeout)."""
    async with asyncio.timeout(within_s):
        async for record in consumer:
            if predicate(record):
                return record
    raise AssertionError("unreachable")


async def test_publish_and_consume_an_envelope(settings, unique_id):
    store_id = f"store-{unique_id}"
    shift = ShiftPublished(
        shift_id=f"shift-{unique_id}", optometrist_id="opt-1", store_id=store_id,
        date=dt.date(2026, 11, 26), start="09:00", end="17:00",
    )  # fmt: skip
    envelope = new_envelope(
        shift, region="cn", store_id=store_id, correlation_id=unique_id, occurred_at=NOW
    )
    producer = make_producer(settings)
    consumer = make_consumer(settings, ROSTER_EVENTS, group_id=f"itest-{unique_id}")
    await producer.start()
    await consumer.start()
    try:
        meta = await EventPublisher(producer).publish(
            envelope, traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01"
        )
        record = await _consume_until(consumer, lambda r: r.key == store_id.encode())
    finally:
        await consumer.stop()
        await producer.stop()
    assert (record.partition, record.offset) == (meta.partition, meta.offset)
    decoded = decode(record.value, record.headers)
    assert decoded == envelope
    assert decoded.payload == shift
    assert header(record.headers, "traceparent") == "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    assert header(record.headers, "content-type") == "application/json"


async def test_same_store_always_lands_on_the_same_partition(settings, unique_id):
    store_id = f"store-{unique_id}"
    producer = make_producer(settings)
    await producer.start()
    try:
        publisher = EventPublisher(producer)
        partitions = set()
        for i in range(5):
            shift = ShiftPublished(
                shift_id=f"s{i}-{unique_id}", optometrist_id="o", store_id=store_id,
                date=dt.date(2026, 11, 26), start="09:00", end="10:00",
            )  # fmt: skip
            env = new_envelope(
                shift, region="cn", store_id=store_id, correlation_id="c", occurred_at=NOW
            )
            partitions.add((await publisher.publish(env)).partition)
    finally:
        await producer.stop()
    assert len(partitions) == 1  # a store is never split: its commands stay in order


async def test_dead_letter_keeps_the_original_bytes(settings, unique_id):
    garbage = b'{"not": "an envelope"'
    key = f"store-{unique_id}".encode()
    producer = make_producer(settings)
    dlq = dlq_topic_for(ROSTER_EVENTS)
    consumer = make_consumer(settings, dlq, group_id=f"itest-dlq-{unique_id}")
    await producer.start()
    await consumer.start()
    try:
        failed = ConsumerRecord(
            topic=ROSTER_EVENTS, partition=3, offset=42, timestamp=0, timestamp_type=0,
            key=key, value=garbage, checksum=None, serialized_key_size=len(key),
            serialized_value_size=len(garbage), headers=[("x-test", b"1")],
        )  # fmt: skip
        await dead_letter(
            EventPublisher(producer), failed, service="itest", region="cn",
            error=ValueError("malformed JSON"), now=NOW,
        )  # fmt: skip
        record = await _consume_until(consumer, lambda r: r.key == key)
    finally:
        await consumer.stop()
        await producer.stop()
    letter = decode(record.value, record.headers).payload
    assert isinstance(letter, DeadLetter)
    assert letter.original_topic == ROSTER_EVENTS
    assert (letter.partition, letter.offset) == (3, 42)
    assert letter.original_value() == garbage
    assert "malformed JSON" in letter.error
