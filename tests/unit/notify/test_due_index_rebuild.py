"""`NotifyRepository.rebuild_schedule`'s marker bookkeeping, with in-memory stand-ins for the
outbox and the due index (the integration tests run it against real Redis and MongoDB)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from services.notify.adapters.storage import NotifyRepository

DUE = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


class Index:
    def __init__(self) -> None:
        self.filled = False
        self.entries: dict[str, dt.datetime] = {}

    async def mark_filled(self) -> None:
        self.filled = True

    async def unmark_filled(self) -> None:
        self.filled = False

    async def is_filled(self) -> bool:
        return self.filled

    async def add(self, entries: dict[str, dt.datetime]) -> None:
        self.entries.update(entries)


class Outbox:
    def __init__(self, docs: list[dict[str, Any]], fail_after: int | None = None) -> None:
        self.docs = docs
        self.fail_after = fail_after

    def find(self, query: dict[str, Any], projection: dict[str, int]) -> AsyncIterator[Any]:
        async def cursor() -> AsyncIterator[dict[str, Any]]:
            for n, doc in enumerate(self.docs):
                if self.fail_after is not None and n == self.fail_after:
                    raise ConnectionError("MongoDB went away mid-pass")
                yield doc

        return cursor()


def repository(outbox: Outbox, index: Index) -> NotifyRepository:
    repo = NotifyRepository.__new__(NotifyRepository)  # no database: only these two parts
    repo.outbox = cast(Any, outbox)
    repo.schedule = cast(Any, index)
    return repo


DOCS = [{"_id": f"n{k}", "due_at": DUE} for k in range(5)] + [{"_id": "undated", "due_at": None}]


async def test_a_full_pass_fills_the_index_and_leaves_the_marker():
    index = Index()
    repo = repository(Outbox(DOCS), index)

    assert await repo.rebuild_schedule(chunk=2) == 5
    assert set(index.entries) == {f"n{k}" for k in range(5)}
    assert not await repo.schedule_lost()


async def test_a_failed_pass_takes_the_marker_back_so_the_next_check_rebuilds():
    index = Index()
    repo = repository(Outbox(DOCS, fail_after=3), index)

    with pytest.raises(ConnectionError):
        await repo.rebuild_schedule(chunk=2)
    assert await repo.schedule_lost()  # a half-filled index is not trusted
