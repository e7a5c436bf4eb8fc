"""The booking API's reads while Redis or MongoDB does not answer, in-process (no servers): a
503 `unavailable` with Retry-After (try again), never a 500 that reads as a bug."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from pymongo.errors import NetworkTimeout, ServerSelectionTimeoutError
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

from optisync_common.http import create_app
from optisync_common.problems import PROBLEM_JSON
from optisync_common.settings import ServiceSettings
from services.booking.adapters.bookings import BookingRepository
from services.booking.adapters.views import RedisViews
from services.booking.api.fast_reads import FastAvailabilityReads
from services.booking.api.main import api_router

from .test_api_validation import BERLIN

DAY = "date=2026-03-10"
REDIS_READS = [
    f"/v1/stores/s1/availability?{DAY}&exam_type=std",
    f"/v1/stores/s1/bookings?{DAY}",
    f"/v1/stores/s1/waitlist?{DAY}",
]
MONGO_READS = [
    "/v1/bookings/b1",
    "/v1/customers/c1/bookings",
    f"/v1/stores/s1/bookings?{DAY}",
    "/v1/waitlist/w1",
    "/v1/offers/o1",
]


class Away:
    """A client whose server does not answer: every call raises `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        def call(*args: object, **kwargs: object) -> Any:
            raise self.error

        return call


class RedisAway(Away):
    def register_script(self, script: str) -> None:  # local: RedisViews does it at once
        return None


class Database:
    def __init__(self, collection: object) -> None:
        self.collection = collection

    def __getitem__(self, name: str) -> object:
        return self.collection


class Catalogs:
    async def catalog(self, store_id: str) -> Any:
        return BERLIN

    def cached_view(self, *args: object) -> None:
        return None


def client(views: object, repo: object) -> httpx.AsyncClient:
    settings = ServiceSettings(service_name="booking-unit", max_body_bytes=1024)
    app = create_app(
        settings, title="t", description="d", routers=[api_router], kafka=False, mongo=False,
        redis=False, middleware=[FastAvailabilityReads],
    )  # fmt: skip
    gateway = SimpleNamespace(settings=SimpleNamespace(projection_wait_s=0.0))
    app.state.booking = SimpleNamespace(views=views, repo=repo, gateway=gateway, view_counter=None)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def assert_unavailable(resp: httpx.Response) -> None:
    assert resp.status_code == 503, resp.text
    assert resp.headers["content-type"] == PROBLEM_JSON
    assert resp.json()["code"] == "unavailable"
    assert int(resp.headers["retry-after"]) > 0


@pytest.mark.parametrize("error", [ConnectionError("refused"), TimeoutError("timed out"),
                                   BusyLoadingError("loading")])  # fmt: skip
@pytest.mark.parametrize("url", REDIS_READS)
async def test_a_read_while_redis_is_away_is_503(url, error):
    views = RedisViews(RedisAway(error), "booking:")  # type: ignore[arg-type]
    repo = BookingRepository(Database(Away(AssertionError("not reached"))))  # type: ignore[arg-type]
    async with client(views, repo) as api:
        assert_unavailable(await api.get(url))


@pytest.mark.parametrize(
    "error", [ServerSelectionTimeoutError("no servers"), NetworkTimeout("timed out")]
)
@pytest.mark.parametrize("url", MONGO_READS)
async def test_a_read_while_mongodb_is_away_is_503(url, error):
    repo = BookingRepository(Database(Away(error)))  # type: ignore[arg-type]
    async with client(Catalogs(), repo) as api:
        assert_unavailable(await api.get(url))


def test_every_route_documents_the_503():
    app = create_app(
        ServiceSettings(service_name="booking-unit"), title="t", description="d",
        routers=[api_router], kafka=False, mongo=False, redis=False,
    )  # fmt: skip
    undocumented = [
        f"{method.upper()} {path}"
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/v1/")
        for method, operation in operations.items()
        if "503" not in operation["responses"]
    ]
    assert undocumented == []
