"""The availability processor alone: commands produced straight into `booking.commands.v1`,
decisions read back from `booking.events.v1` (read committed, as every consumer sees them).

Latency is from each command's *scheduled* send time to the moment its decision is visible, so
it includes the producer, the processor's batch and its transaction commit. This isolates the
processor from the HTTP API's own cost (measured by the end-to-end steps of `bench.run`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
from aiokafka import TopicPartition

from bench.stats import percentiles
from optisync_common.kafka import make_consumer, make_producer
from optisync_common.settings import ServiceSettings
from schemas.envelope import new_envelope
from schemas.events.booking import Customer, RequestBooking
from schemas.registry import BOOKING_EVENTS, topic
from schemas.serde import encode

Slot = tuple[str, str, str]
DECISIONS = ("BookingConfirmed", "BookingRejected")


def _command(slot: Slot, key: str, now: dt.datetime) -> Any:
    store, optometrist, start = slot
    command = RequestBooking(
        booking_id=key, idempotency_key=key, channel="store_system",
        customer=Customer(customer_ref=key), exam_type="standard", optometrist_id=optometrist,
        slot_start=dt.datetime.fromisoformat(start), requested_at=now,
    )  # fmt: skip
    return encode(
        new_envelope(command, region="cn", store_id=store, correlation_id=key, occurred_at=now)
    )


async def open_loop(
    settings: ServiceSettings, rate: int, seconds: int, slots: Iterator[Slot], tag: str
) -> dict[str, Any]:
    """Offer `rate` commands/s for `seconds`; wait up to 60 s more for the last decisions."""
    producer = make_producer(settings, linger_ms=1)
    consumer = make_consumer(settings, group_id=None)
    await producer.start()
    await consumer.start()
    count_partitions = topic(BOOKING_EVENTS).partitions
    partitions = [TopicPartition(BOOKING_EVENTS, p) for p in range(count_partitions)]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    scheduled: dict[str, float] = {}
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    count = rate * seconds
    last_arrival = [time.perf_counter()]

    async def collect() -> None:
        while len(latencies) < count:
            batch = await consumer.getmany(timeout_ms=200)
            arrived = time.perf_counter()
            for records in batch.values():
                for record in records:
                    event = orjson.loads(record.value or b"{}")
                    at = scheduled.pop(event.get("correlation_id"), None)
                    if at is not None and event.get("type") in DECISIONS:
                        latencies.append((arrived - at) * 1000)
                        outcomes[event["type"]] += 1
                        last_arrival[0] = arrived

    collector = asyncio.create_task(collect())
    try:
        now = dt.datetime.now(dt.UTC)
        commands = [(f"{tag}-{k}", _command(next(slots), f"{tag}-{k}", now)) for k in range(count)]
        start = time.perf_counter()
        for k, (key, message) in enumerate(commands):
            at = start + k / rate
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            scheduled[key] = at
            await producer.send(
                message.topic, message.value, key=message.key, headers=list(message.headers)
            )
        await producer.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(collector), timeout=60)
        elapsed = last_arrival[0] - start
    finally:
        collector.cancel()
        await consumer.stop()
        await producer.stop()
    return summarize(rate, latencies, outcomes, count, elapsed)


def summarize(
    rate: int, latencies: list[float], outcomes: Counter[str], offered: int, elapsed: float
) -> dict[str, Any]:
    p50, p95, p99, worst = percentiles(latencies, 0.50, 0.95, 0.99, 1.0)
    return {
        "target_rps": rate,
        "decided_rps": round(len(latencies) / elapsed, 1) if elapsed > 0 else 0,
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "max_ms": worst,
        "undecided": offered - len(latencies),
        "outcomes": dict(outcomes),
    }
