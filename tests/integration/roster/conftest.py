"""Roster integration fixtures: the roster API app in-process with its real lifespan (outbox
sweeper, booking-events projection) against the real Kafka and FerretDB, an injected clock,
and a tap that reads roster.events.v1 back from the broker."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition

from deploy.local.infra import Endpoints
from optisync_common.clock import FixedClock
from optisync_common.kafka import make_admin, make_consumer
from optisync_common.resources import Resources
from schemas.envelope import Envelope
from schemas.registry import ROSTER_EVENTS
from schemas.serde import decode
from services.roster.entrypoints.http import build_app
from services.roster.settings import RosterSettings

# Early March 2026: the DST week (23-29 March) is ahead, so leave in it is not in the past.
NOW = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


async def eventually(check: Any, within_s: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within_s}s")
        await asyncio.sleep(0.05)


class RosterTap:
    """Every roster event produced after the tap started, by Kafka key (the store id)."""

    def __init__(self) -> None:
        self.by_key: dict[str, list[Envelope[Any]]] = defaultdict(list)
        self._task: asyncio.Task[None] | None = None

    async def start(self, settings: RosterSettings) -> None:
        admin = make_admin(settings)
        await admin.start()
        try:
            (described,) = await admin.describe_topics([ROSTER_EVENTS])
        finally:
            await admin.close()
        parts = [
            TopicPartition(ROSTER_EVENTS, int(p["partition"])) for p in described["partitions"]
        ]
        consumer = make_consumer(settings, group_id=None)
        await consumer.start()
        consumer.assign(parts)
        for tp, offset in (await consumer.end_offsets(parts)).items():
            consumer.seek(tp, offset)
        self._task = asyncio.create_task(self._run(consumer))

    async def _run(self, consumer: Any) -> None:
        try:
            async for record in consumer:
                self.by_key[record.key.decode()].append(decode(record.value, record.headers))
        finally:
            await consumer.stop()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def events(self, key: str, count: int, settle_s: float = 1.0) -> list[Envelope[Any]]:
        """The events keyed ``key`` once at least ``count`` arrived, plus any that follow
        within ``settle_s`` (so a test asserting the exact list also sees extras)."""

        async def enough() -> bool:
            return len(self.by_key[key]) >= count

        await eventually(enough)
        await asyncio.sleep(settle_s)
        return list(self.by_key[key])

    async def after(
        self, key: str, mark: int, count: int, settle_s: float = 1.0
    ) -> list[Envelope[Any]]:
        """The events keyed ``key`` after the first ``mark`` ones (see ``events``)."""
        return (await self.events(key, mark + count, settle_s))[mark:]


@pytest.fixture(scope="session")
def roster_settings(endpoints: Endpoints) -> RosterSettings:
    return endpoints.settings(
        RosterSettings,
        environment="test",
        region="eu",
        bookings_group=f"roster-bookings-itest-{uuid.uuid4().hex[:8]}",
        bookings_offset_reset="latest",
        outbox_sweep_s=0.3,
    )


@pytest.fixture(scope="session")
def roster_clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture(scope="session")
async def roster_app(
    roster_settings: RosterSettings, roster_clock: FixedClock
) -> AsyncIterator[Any]:
    app = build_app(roster_settings, roster_clock)
    async with app.router.lifespan_context(app):
        resources: Resources = app.state.resources
        await resources.wait_for_kafka()

        async def assigned() -> bool:
            return bool(app.state.projection.assigned())

        await eventually(assigned, within_s=60)
        yield app


@pytest.fixture(scope="session")
async def roster(roster_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=roster_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://roster") as client:
        yield client


@pytest.fixture(scope="session")
async def tap(roster_settings: RosterSettings) -> AsyncIterator[RosterTap]:
    tap = RosterTap()
    await tap.start(roster_settings)
    yield tap
    await tap.stop()
