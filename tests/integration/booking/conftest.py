"""Booking integration fixtures: the projector in-process against the real servers (own
consumer group, starting at the end), a registered store per test, the API app and a decider."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from deploy.local.infra import Endpoints
from optisync_common.clock import FixedClock
from optisync_common.resources import Resources, open_resources
from services.booking.adapters.projections import Projector
from services.booking.adapters.views import RedisViews
from services.booking.settings import BookingSettings
from tests.integration.booking.helpers import (
    Bus,
    FakeDecider,
    Store,
    api_client,
    now,
    real_processor_running,
    register_store,
)


@pytest.fixture(scope="session")
def booking_settings(endpoints: Endpoints) -> BookingSettings:
    return endpoints.settings(BookingSettings, environment="test")


@pytest.fixture(scope="session")
async def resources(booking_settings: BookingSettings) -> AsyncIterator[Resources]:
    async with open_resources(booking_settings) as res:
        await res.wait_for_kafka()
        yield res


@pytest.fixture(scope="session")
def views(resources: Resources) -> RedisViews:
    assert resources.redis is not None
    return RedisViews(resources.redis, "booking:")


@pytest.fixture(scope="session")
async def projector(
    booking_settings: BookingSettings, resources: Resources
) -> AsyncIterator[Projector]:
    # Own group, starting at the end: it projects what these tests publish, not history.
    projector = Projector(
        booking_settings,
        group_id=f"booking-projector-itest-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="latest",
    )
    await projector.start(resources)
    await projector.wait_assigned()
    yield projector
    await projector.stop()


@pytest.fixture(scope="session")
def bus(resources: Resources, projector: Projector) -> Bus:
    return Bus(resources.publisher, projector)


@pytest.fixture
async def store(bus: Bus, views: RedisViews, unique_id: str) -> Store:
    return await register_store(bus, views, f"itest-{unique_id}")


@pytest.fixture
async def decider(
    bus: Bus, store: Store, booking_settings: BookingSettings
) -> AsyncIterator[FakeDecider]:
    if await real_processor_running(booking_settings):
        pytest.fail(
            "a real availability processor is consuming booking.commands.v1 on this broker and "
            "would answer these tests' commands too; stop it (e.g. a running e2e stack) first"
        )
    fake = FakeDecider(bus, store.store_id)
    await fake.start(booking_settings)
    yield fake
    await fake.stop()


@pytest.fixture(scope="session")
def clock() -> FixedClock:
    return FixedClock(now())


@pytest.fixture(scope="session")
async def api(
    booking_settings: BookingSettings, projector: Projector, clock: FixedClock
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(booking_settings, clock) as client:
        yield client
