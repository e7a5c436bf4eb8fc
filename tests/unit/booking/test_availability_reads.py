"""The availability read in-process (no servers): what a stored view is answered as at a given
moment, and on the night a local hour repeats. The fast path and the FastAPI route must answer
alike, so both are asked."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest

from optisync_common.clock import FixedClock
from optisync_common.http import create_app
from optisync_common.settings import ServiceSettings
from schemas.events.availability import ExamTypeSlots, StoreDayAvailability
from schemas.events.base import EventPayload
from schemas.events.booking import BookingConfirmed
from schemas.events.roster import (
    ExamTypeDefined,
    OptometristJoined,
    ShiftPublished,
    StoreRegistered,
)
from services.booking.adapters.processor import AvailabilityProcessor, ProcessorTables
from services.booking.api.deps import get_clock
from services.booking.api.fast_reads import FastAvailabilityReads
from services.booking.api.main import api_router
from services.booking.api.presenters import render_availability

from .storefixture import env, request
from .test_api_validation import BERLIN

DAY = dt.date(2026, 3, 10)  # Berlin is on CET (+01:00)
STARTS = ["09:00", "12:45", "13:00", "13:15", "17:00"]


def view_of(day: dt.date, starts: list[str], timezone: str = "Europe/Berlin") -> bytes:
    view = StoreDayAvailability(
        store_id="s1", local_date=day, timezone=timezone, slot_minutes=15,
        exam_types={"std": ExamTypeSlots(
            duration_minutes=30, free_starts=starts, free_count=len(starts)
        )},
        computed_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC), seq=1,
    )  # fmt: skip
    return orjson.dumps(view.model_dump(mode="json"))


class Views:
    """Stored views by day; `cached` says whether the API holds them in memory (then the fast
    path answers) or reads them from Redis (the route does)."""

    def __init__(self, cached: bool) -> None:
        self.cached = cached
        self.views: dict[str, bytes] = {}
        self.routed = 0

    async def catalog(self, store_id: str) -> Any:
        return BERLIN if store_id == "s1" else None

    async def view(self, store_id: str, day: dt.date) -> bytes | None:
        self.routed += 1
        return self.views.get(day.isoformat())

    def cached_view(self, store_id: str, day: str) -> bytes | None:
        return self.views.get(day) if self.cached else None


@pytest.fixture(params=["fast path", "route"])
def api(request: pytest.FixtureRequest) -> tuple[httpx.AsyncClient, Views, FixedClock]:
    settings = ServiceSettings(service_name="booking-unit", max_body_bytes=1024)
    app = create_app(
        settings, title="t", description="d", routers=[api_router], kafka=False, mongo=False,
        redis=False, middleware=[FastAvailabilityReads],
    )  # fmt: skip
    views = Views(cached=request.param == "fast path")
    app.state.booking = SimpleNamespace(views=views, repo=None, gateway=None, view_counter=None)
    clock = FixedClock(dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    app.dependency_overrides[get_clock] = lambda: clock
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test"), views, clock


async def local_times(client: httpx.AsyncClient, day: dt.date) -> list[str]:
    params = {"date": day.isoformat(), "exam_type": "std"}
    resp = await client.get("/v1/stores/s1/availability", params=params)
    assert resp.status_code == 200, resp.text
    return [slot["local_time"] for slot in resp.json()["slots"]]


async def test_starts_that_have_begun_are_not_offered(api):
    """The view was computed when the day last changed; read later, its earlier starts have
    begun, and the processor would refuse them (`in_past`)."""
    client, views, clock = api
    views.views[DAY.isoformat()] = view_of(DAY, STARTS)
    assert await local_times(client, DAY) == STARTS
    clock.set(dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC))  # 13:00 in Berlin
    assert await local_times(client, DAY) == ["13:15", "17:00"]  # 13:00 has begun too
    clock.advance(minutes=1)
    assert await local_times(client, DAY) == ["13:15", "17:00"]
    clock.advance(hours=5)
    assert await local_times(client, DAY) == []
    tomorrow = DAY + dt.timedelta(days=1)
    views.views[tomorrow.isoformat()] = view_of(tomorrow, STARTS)
    assert await local_times(client, tomorrow) == STARTS
    assert (views.routed == 0) == (views.cached)  # the path the parameter names answered


AUTUMN = dt.date(2026, 10, 25)  # London: 01:00-02:00 runs twice, BST (+01:00) then GMT
AT = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)


def night_store() -> AvailabilityProcessor:
    """Open 00:00-03:00 on the autumn night, one optometrist, 30-minute slots and exams."""
    proc = AvailabilityProcessor(ProcessorTables({}, {}, {}, {}), region="eu")
    hours = {d: [{"open": "00:00", "close": "03:00"}] for d in range(7)}
    roster: list[EventPayload] = [
        StoreRegistered(store_id="ldn", name="S", region="eu", timezone="Europe/London",
                        opening_hours=hours, slot_minutes=30),
        ExamTypeDefined(code="std", name="S", duration_minutes=30, required_skill="g"),
        OptometristJoined(optometrist_id="A", name="A", skills=["g"], home_store_id="ldn",
                          store_ids=["ldn"]),
        ShiftPublished(shift_id="a", optometrist_id="A", store_id="ldn", date=AUTUMN,
                       start="00:00", end="03:00"),
    ]  # fmt: skip
    for payload in roster:
        proc.handle(env("ldn", payload, AT), AT)
    return proc


def book(proc: AvailabilityProcessor, start_utc: str, key: str) -> list[Any]:
    start = dt.datetime.fromisoformat(start_utc)
    cmd = request("ldn", start, key=key, customer=key, exam="std", now=AT)
    return [out.payload for out in proc.handle(cmd, AT)]


def test_the_second_run_of_a_repeated_hour_is_offered_as_itself():
    """With the first run of 01:00 and 01:30 booked, the free ones are the second run's: the
    wall times never go back, so only the view can say which run they are."""
    proc = night_store()
    book(proc, "2026-10-25T00:00:00Z", "k1")  # 01:00 BST
    outputs = book(proc, "2026-10-25T00:30:00Z", "k2")  # 01:30 BST
    view = [o for o in outputs if isinstance(o, StoreDayAvailability)][-1]
    body = render_availability(orjson.dumps(view.model_dump(mode="json")), "std", AT.timestamp())
    slots = orjson.loads(body or b"")["slots"]
    assert [(s["start"][11:], s["start_utc"]) for s in slots] == [
        ("00:00:00+01:00", "2026-10-24T23:00:00Z"), ("00:30:00+01:00", "2026-10-24T23:30:00Z"),
        ("01:00:00+00:00", "2026-10-25T01:00:00Z"), ("01:30:00+00:00", "2026-10-25T01:30:00Z"),
        ("02:00:00+00:00", "2026-10-25T02:00:00Z"), ("02:30:00+00:00", "2026-10-25T02:30:00Z"),
    ]  # fmt: skip
    assert isinstance(book(proc, slots[2]["start_utc"], "k3")[0], BookingConfirmed)
