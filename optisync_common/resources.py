"""The I/O clients a service holds for its lifetime, opened once and checked by /readyz.

Kafka may be down when a service starts: the producer connects in the background with retries
and /readyz reports 503 until it is up, instead of the process crash-looping.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from optisync_common.health import ReadinessCheck
from optisync_common.kafka import EventPublisher, make_producer
from optisync_common.logging import get_logger
from optisync_common.settings import ServiceSettings

log = get_logger(__name__)


class NotReady(RuntimeError):
    pass


@dataclass
class Resources:
    settings: ServiceSettings
    producer: AIOKafkaProducer | None = None
    mongo_client: AsyncMongoClient[dict[str, Any]] | None = None
    redis: aioredis.Redis | None = None
    _producer_started: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def db(self) -> AsyncDatabase[dict[str, Any]]:
        if self.mongo_client is None:
            raise NotReady("this service has no MongoDB")
        return self.mongo_client[self.settings.mongo_database]

    @property
    def publisher(self) -> EventPublisher:
        if self.producer is None or not self._producer_started.is_set():
            raise NotReady("Kafka producer is not connected yet")
        return EventPublisher(self.producer)

    def readiness_checks(self) -> dict[str, ReadinessCheck]:
        checks: dict[str, ReadinessCheck] = {}
        if self.producer is not None:
            checks["kafka"] = self._check_kafka
        if self.mongo_client is not None:
            checks["mongodb"] = self._check_mongo
        if self.redis is not None:
            checks["redis"] = self._check_redis
        return checks

    async def _check_kafka(self) -> None:
        if self.producer is None or not self._producer_started.is_set():
            raise NotReady("producer not connected")
        await self.producer.client.fetch_all_metadata()

    async def _check_mongo(self) -> None:
        assert self.mongo_client is not None
        await self.mongo_client.admin.command("ping")

    async def _check_redis(self) -> None:
        assert self.redis is not None
        await self.redis.ping()

    async def _start_producer(self) -> None:
        assert self.producer is not None
        delay = 0.5
        while True:
            try:
                await self.producer.start()
                self._producer_started.set()
                log.info("kafka_producer_started", bootstrap=self.settings.kafka_bootstrap)
                return
            except Exception as exc:
                log.warning("kafka_producer_start_failed", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def wait_for_kafka(self, within_s: float = 30.0) -> None:
        await asyncio.wait_for(self._producer_started.wait(), within_s)


@contextlib.asynccontextmanager
async def open_resources(
    settings: ServiceSettings, *, kafka: bool = True, mongo: bool = True, redis: bool = True
) -> AsyncIterator[Resources]:
    res = Resources(settings)
    if kafka:
        res.producer = make_producer(settings)
        res._tasks.append(asyncio.create_task(res._start_producer()))
    if mongo:
        res.mongo_client = AsyncMongoClient(
            settings.mongo_url, serverSelectionTimeoutMS=3000, tz_aware=True
        )
    if redis:
        # A blocking pool: a burst of requests waits for a connection instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=settings.redis_max_connections,
            timeout=5,
            socket_timeout=2,
            socket_connect_timeout=2,
        )
        res.redis = aioredis.Redis(connection_pool=pool)
    try:
        yield res
    finally:
        for task in res._tasks:
            task.cancel()
        if res.producer is not None and res._producer_started.is_set():
            await res.producer.stop()
        if res.mongo_client is not None:
            await res.mongo_client.close()
        if res.redis is not None:
            await res.redis.aclose()
