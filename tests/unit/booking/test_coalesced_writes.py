"""Concurrent partitions' runs (new bookings, availability views) become one write, each caller
its own results."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from services.booking.adapters.projections import CoalescedWrites


class Store:
    """Records each write; refuses every envelope named in `conflicts`."""

    def __init__(self, fail: Exception | None = None, conflicts: frozenset[str] = frozenset()):
        self.writes: list[list[Any]] = []
        self.fail = fail
        self.conflicts = conflicts

    async def insert(self, envelopes: Sequence[Any]) -> list[Any]:
        self.writes.append(list(envelopes))
        await asyncio.sleep(0)  # a real write yields to the loop
        if self.fail is not None:
            raise self.fail
        return ["conflict" if e in self.conflicts else "applied" for e in envelopes]


async def test_callers_in_the_same_turn_share_one_write_and_get_their_own_results():
    store = Store(conflicts=frozenset({"b2"}))
    inserts = CoalescedWrites(store.insert)
    results = await asyncio.gather(
        inserts(["a1", "a2"]), inserts(["b1", "b2", "b3"]), inserts(["c1"])
    )
    assert store.writes == [["a1", "a2", "b1", "b2", "b3", "c1"]]
    assert list(results) == [["applied"] * 2, ["applied", "conflict", "applied"], ["applied"]]


async def test_a_caller_that_comes_later_gets_a_write_of_its_own():
    store = Store()
    inserts = CoalescedWrites(store.insert)
    assert await inserts(["a"]) == ["applied"]
    assert await inserts(["b"]) == ["applied"]
    assert store.writes == [["a"], ["b"]]


async def test_a_failed_write_fails_every_caller_in_it():
    store = Store(fail=ConnectionError("mongo away"))
    inserts = CoalescedWrites(store.insert)
    results = await asyncio.gather(inserts(["a"]), inserts(["b"]), return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]
    assert len(store.writes) == 1


async def test_a_cancelled_caller_leaves_the_others_their_results():
    store = Store()
    inserts = CoalescedWrites(store.insert)
    first = asyncio.ensure_future(inserts(["a"]))
    second = asyncio.ensure_future(inserts(["b"]))
    await asyncio.sleep(0)  # both joined the write
    first.cancel()
    assert await second == ["applied"]
    with pytest.raises(asyncio.CancelledError):
        await first
    assert store.writes == [["a", "b"]]
