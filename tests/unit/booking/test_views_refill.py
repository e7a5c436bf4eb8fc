"""`ViewsRefill`'s bookkeeping with an in-memory consumer and marks (the integration test
`test_views_redis_lost_come_back_...` runs it against real Kafka and Redis)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, cast

from aiokafka import TopicPartition

from optisync_common.clock import FixedClock
from services.booking.adapters.projections import ViewsRefill

A0, A1 = TopicPartition("availability.v1", 0), TopicPartition("availability.v1", 1)
R0 = TopicPartition("roster.events.v1", 0)


class Marks:
    def __init__(self, *marked: TopicPartition) -> None:
        self.marked = {f"{tp.topic}:{tp.partition}" for tp in marked}

    async def unfilled(self, partitions: Sequence[str]) -> list[str]:
        return [p for p in partitions if p not in self.marked]

    async def mark_filled(self, partitions: Sequence[str], now: dt.datetime) -> None:
        self.marked.update(partitions)


class Consumer:
    def __init__(self, *assigned: TopicPartition, commit_fails: bool = False) -> None:
        self.assigned = set(assigned)
        self.commit_fails = commit_fails
        self.sought: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def beginning_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 7 for tp in tps}  # compaction moved the start

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought[tp] = offset

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.commit_fails:
            raise RuntimeError("rebalance in progress")
        self.committed.update(offsets)


def refill(marks: Marks, every_s: float = 3600.0) -> ViewsRefill:
    clock = FixedClock(dt.datetime(2026, 11, 29, tzinfo=dt.UTC))
    return ViewsRefill(cast(Any, marks), clock, every_s)


async def check(guard: ViewsRefill, consumer: Consumer) -> list[TopicPartition]:
    return await guard.check(cast(Any, consumer))


async def test_only_unmarked_partitions_go_back_to_their_start_committed_then_marked():
    marks, consumer = Marks(A0), Consumer(A0, A1, R0)
    guard = refill(marks)

    assert sorted(await check(guard, consumer)) == [A1, R0]
    assert consumer.sought == consumer.committed == {A1: 7, R0: 7}
    assert marks.marked == {"availability.v1:0", "availability.v1:1", "roster.events.v1:0"}


async def test_a_failed_commit_leaves_the_partition_unmarked_and_checked_again():
    marks, consumer = Marks(), Consumer(A0, commit_fails=True)
    guard = refill(marks)

    assert await check(guard, consumer) == [A0]
    assert marks.marked == set() and consumer.committed == {}

    consumer.commit_fails = False
    assert await check(guard, consumer) == [A0]  # at once, not after `every_s`
    assert marks.marked == {"availability.v1:0"} and consumer.committed == {A0: 7}


async def test_marks_are_read_again_on_a_new_assignment_or_after_the_interval():
    marks, consumer = Marks(A0), Consumer(A0)
    guard = refill(marks)
    assert await check(guard, consumer) == []

    marks.marked.clear()  # Redis lost everything
    assert await check(guard, consumer) == []  # not looked at again before the interval...
    consumer.assigned.add(A1)
    assert sorted(await check(guard, consumer)) == [A0, A1]  # ...but on a new assignment

    marks.marked.clear()
    fast = refill(marks, every_s=0.0)
    assert sorted(await check(fast, consumer)) == [A0, A1]
