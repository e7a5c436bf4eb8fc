"""Group commit for MongoDB inserts and Redis commands: concurrent callers (one per event in
flight) hand over documents and share one `insert_many` (or one Redis pipeline). On FerretDB
(SQLite underneath) every write command is a transaction of its own, so one command for a
hundred documents costs about what one costs for three; while a batch is being written the
next one collects."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import redis.asyncio as aioredis
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

Doc = dict[str, Any]
DUPLICATE_KEY = 11000


class InsertBatcher:
    def __init__(self, collection: AsyncCollection[Doc], max_docs: int = 1000) -> None:
        self.collection = collection
        self.max_docs = max_docs
        self._queue: list[tuple[list[Doc], asyncio.Future[set[str]]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def insert(self, docs: list[Doc]) -> set[str]:
        """Insert `docs`; returns the ids that already existed (not inserted)."""
        if not docs:
            return set()
        future: asyncio.Future[set[str]] = asyncio.get_running_loop().create_future()
        self._queue.append((docs, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="mongo-insert-batcher")
        self._wakeup.set()
        return await future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch: list[tuple[list[Doc], asyncio.Future[set[str]]]] = []
                size = 0
                while self._queue and (not batch or size + len(self._queue[0][0]) <= self.max_docs):
                    item = self._queue.pop(0)
                    batch.append(item)
                    size += len(item[0])
                await self._flush(batch)

    async def _flush(self, batch: list[tuple[list[Doc], asyncio.Future[set[str]]]]) -> None:
        docs = [doc for docs, _ in batch for doc in docs]
        duplicates: set[str] = set()
        try:
            await self.collection.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                self._fail(batch, exc)
                return
            duplicates = {docs[e["index"]]["_id"] for e in errors}
        except Exception as exc:
            self._fail(batch, exc)
            return
        for item_docs, future in batch:
            if not future.done():
                future.set_result(
                    {d["_id"] for d in item_docs} & duplicates if duplicates else set()
                )

    @staticmethod
    def _fail(batch: list[tuple[list[Doc], asyncio.Future[set[str]]]], exc: Exception) -> None:
        for _, future in batch:
            if not future.done():
                future.set_exception(exc)


class RedisBatcher:
    """Group commit for Redis: commands of concurrent callers (one per event in flight) share
    one pipeline (one round trip, one connection checkout, one read). Idle, a command goes out
    at once, alone; while a pipeline is in flight the next one collects."""

    def __init__(self, redis: aioredis.Redis, max_commands: int = 500) -> None:
        self.redis = redis
        self.max_commands = max_commands
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def execute(self, *command: Any) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((command, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="redis-batcher")
        self._wakeup.set()
        return await future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch = self._queue[: self.max_commands]
                del self._queue[: self.max_commands]
                await self._flush(batch)

    async def _flush(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        try:
            pipe = self.redis.pipeline(transaction=False)
            for command, _ in batch:
                pipe.execute_command(*command)
            results = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
