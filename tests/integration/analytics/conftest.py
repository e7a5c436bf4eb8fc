"""Analytics integration fixtures: the aggregator in-process on the real Kafka and FerretDB
(own database and consumer group per session, starting at the end of the topics), a producer,
and the HQ API app."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from deploy.local.infra import Endpoints
from optisync_common.kafka import make_producer
from optisync_common.resources import Resources, open_resources
from schemas.envelope import Envelope
from schemas.serde import encode
from services.analytics.adapters.worker import AggregatorWorker
from services.analytics.entrypoints.http import build_app
from services.analytics.settings import AnalyticsSettings


@pytest.fixture(scope="session")
def analytics_settings(endpoints: Endpoints) -> AnalyticsSettings:
    run = uuid.uuid4().hex[:8]
    return endpoints.settings(
        AnalyticsSettings,
        environment="test",
        service_name=f"analytics-itest-{run}",  # its own database
        consumer_group=f"analytics-itest-{run}",
        consumer_offset_reset="latest",
        metadata_refresh_ms=1000,  # mirrored topics created by a test are picked up at once
    )


@pytest.fixture(scope="session")
async def analytics_resources(
    analytics_settings: AnalyticsSettings,
) -> AsyncIterator[Resources]:
    async with open_resources(analytics_settings, kafka=False) as res:
        yield res
        assert res.mongo_client is not None and res.redis is not None
        await res.mongo_client.drop_database(analytics_settings.mongo_database)
        async for key in res.redis.scan_iter(match=f"{analytics_settings.redis_prefix}*"):
            await res.redis.delete(key)


@pytest.fixture(scope="session")
async def aggregator_worker(
    analytics_settings: AnalyticsSettings, analytics_resources: Resources
) -> AsyncIterator[AggregatorWorker]:
    worker = AggregatorWorker(analytics_settings)
    await worker.start(analytics_resources)
    await worker.wait_assigned(60)
    yield worker
    await worker.stop()


@pytest.fixture(scope="session")
async def producer(analytics_settings: AnalyticsSettings) -> AsyncIterator[AIOKafkaProducer]:
    prod = make_producer(analytics_settings, linger_ms=20, max_batch_size=256 * 1024)
    await prod.start()
    yield prod
    await prod.stop()


Produce = Callable[[Sequence[Envelope[Any]]], Awaitable[dict[TopicPartition, int]]]


@pytest.fixture(scope="session")
def produce(producer: AIOKafkaProducer) -> Produce:
    """Publish envelopes to their topics; returns the first offset written per partition."""

    async def send_all(envelopes: Sequence[Envelope[Any]]) -> dict[TopicPartition, int]:
        written: dict[TopicPartition, int] = {}
        for start in range(0, len(envelopes), 2000):
            futures = []
            for env in envelopes[start : start + 2000]:
                m = encode(env)
                futures.append(await producer.send(m.topic, m.value, key=m.key, headers=m.headers))
            for meta in await asyncio.gather(*futures):
                tp = TopicPartition(meta.topic, meta.partition)
                written[tp] = min(written.get(tp, meta.offset), meta.offset)
        return written

    return send_all


@pytest.fixture(scope="session")
async def api(analytics_settings: AnalyticsSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(analytics_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
