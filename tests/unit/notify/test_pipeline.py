"""The worker's pipeline: in order per booking, bookings concurrently, commits never pass an
unhandled record."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from services.notify.adapters.worker import Pipeline

TP = TopicPartition("booking.events.v1", 0)
NO_ENVELOPE: Any = None


@dataclass
class Rec:  # the Record fields the pipeline reads
    offset: int
    key: str


def record(offset: int, key: str) -> Any:
    return Rec(offset, key)


async def test_order_per_key_concurrency_across_keys_and_commit_offsets():
    gates = {o: asyncio.Event() for o in range(4)}
    log: list[tuple[str, int]] = []

    async def handle(record, _envelope):
        log.append(("start", record.offset))
        await gates[record.offset].wait()
        log.append(("end", record.offset))

    pipeline = Pipeline(handle)
    for offset, key in [(0, "a"), (1, "b"), (2, "a"), (3, "c")]:
        pipeline.submit(TP, record(offset, key), NO_ENVELOPE, key)
    await asyncio.sleep(0.01)
    # a's second event waits for its first; b and c run alongside
    assert sorted(o for kind, o in log if kind == "start") == [0, 1, 3]
    assert pipeline.committable() == {TP: 0}
    gates[1].set()
    gates[3].set()
    await asyncio.sleep(0.01)
    assert pipeline.committable() == {TP: 0}  # offset 0 is still in flight
    gates[0].set()
    await asyncio.sleep(0.01)
    assert ("start", 2) in log and log.index(("start", 2)) > log.index(("end", 0))
    assert pipeline.committable() == {TP: 2}
    gates[2].set()
    await pipeline.wait_below(1)
    assert pipeline.committable() == {TP: 4}


async def test_wait_below_bounds_records_in_flight():
    release = asyncio.Event()

    async def handle(_record, _envelope):
        await release.wait()

    pipeline = Pipeline(handle)
    for offset in range(5):
        pipeline.submit(TP, record(offset, str(offset)), NO_ENVELOPE, str(offset))
    waiter = asyncio.create_task(pipeline.wait_below(3))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    release.set()
    await asyncio.wait_for(waiter, 1)
    await pipeline.cancel()
