"""The booking API's answers to odd requests, in-process (no servers): the body limit, the
Idempotency-Key header, the body's media type and how instants and days must be written.
The fast booking path and the FastAPI route must answer alike, so both are asked."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest
from fastapi import Response

from optisync_common.http import create_app
from optisync_common.problems import ProblemError
from optisync_common.settings import ServiceSettings
from schemas.envelope import new_envelope
from schemas.events.booking import BookingConfirmed, Customer
from services.booking.adapters.bookings import confirmed_doc
from services.booking.adapters.processor_retention import retention_cutoff
from services.booking.api.deps import get_clock, get_context
from services.booking.api.fast_bookings import FastBookingRequests
from services.booking.api.fast_reads import FastAvailabilityReads
from services.booking.api.main import api_router
from services.booking.api.routes.bookings import _check_retained

from .test_api_validation import BERLIN

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
LIMIT = 1024
BOOKING = {
    "store_id": "s1", "exam_type": "std", "slot_start": "2026-03-10T09:30:00+01:00",
    "channel": "web", "customer": {"customer_ref": "c1"},
}  # fmt: skip


class Catalogs:
    async def catalog(self, store_id: str) -> Any:
        return BERLIN if store_id == "s1" else None

    async def view(self, store_id: str, date: dt.date) -> None:
        return None

    def cached_view(self, store_id: str, date: dt.date) -> None:
        return None


class Gateway:
    """Takes what would be produced, and answers as if it had been decided."""

    def __init__(self) -> None:
        self.submitted: list[Any] = []

    def request_renderer(self, *args: object) -> None:
        return None

    def change_renderer(self, *args: object) -> None:
        return None

    async def submit(self, command: Any, **kwargs: object) -> Response:
        self.submitted.append(command)
        return Response(b'{"booked": true}', 201, media_type="application/json")


@pytest.fixture(params=["fast path", "route"])
def api(request: pytest.FixtureRequest) -> tuple[httpx.AsyncClient, Gateway]:
    settings = ServiceSettings(service_name="booking-unit", max_body_bytes=LIMIT)
    app = create_app(
        settings, title="t", description="d", routers=[api_router], kafka=False, mongo=False,
        redis=False, middleware=[FastAvailabilityReads, FastBookingRequests],
    )  # fmt: skip
    gateway = Gateway()
    context = SimpleNamespace(views=Catalogs(), gateway=gateway, repo=None, view_counter=None)
    app.state.booking = context
    app.dependency_overrides[get_clock] = lambda: SimpleNamespace(now=lambda: NOW)
    if request.param == "route":  # the fast path steps aside for an overridden context

        async def route_context() -> Any:
            return context

        app.dependency_overrides[get_context] = route_context
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test"), gateway


def booking_with(**changes: object) -> dict[str, Any]:
    return {**BOOKING, **changes}


async def test_a_plain_booking_is_submitted(api):
    client, gateway = api
    resp = await client.post("/v1/bookings", json=BOOKING, headers={"Idempotency-Key": "k1"})
    assert resp.status_code == 201 and len(gateway.submitted) == 1


async def test_a_body_over_the_limit_in_chunks_is_refused_before_anything_is_submitted(api):
    """The first chunk is a whole, valid booking; the rest is JSON whitespace past the limit."""
    client, gateway = api

    async def chunks() -> AsyncIterator[bytes]:
        yield orjson.dumps(BOOKING)
        yield b" " * (2 * LIMIT)

    resp = await client.post(
        "/v1/bookings", content=chunks(),
        headers={"Content-Type": "application/json", "Idempotency-Key": "k1"},
    )  # fmt: skip
    assert resp.status_code == 413 and resp.json()["code"] == "payload_too_large"
    assert gateway.submitted == []


async def test_several_idempotency_keys_are_refused(api):
    client, gateway = api
    resp = await client.post(
        "/v1/bookings", json=BOOKING,
        headers=[("Idempotency-Key", "first"), ("Idempotency-Key", "second")],
    )  # fmt: skip
    assert resp.status_code == 400 and resp.json()["code"] == "duplicate_idempotency_key"
    assert gateway.submitted == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_body_that_is_not_sent_as_json_is_415(api, content_type):
    client, gateway = api
    headers = {"Idempotency-Key": "k1"}
    if content_type:
        headers["Content-Type"] = content_type
    resp = await client.post("/v1/bookings", content=orjson.dumps(BOOKING), headers=headers)
    assert resp.status_code == 415 and resp.json()["code"] == "unsupported_media_type"
    assert gateway.submitted == []


@pytest.mark.parametrize(
    "slot_start",
    [
        1773131400,  # 2026-03-10T08:30Z as Unix seconds: no offset, and which unit?
        1773131400000,
        "1773131400",
        "2026-03-10T09:30:00.0000009+01:00",  # below the microsecond: not on the grid
        "2026-03-10T09:30:00",  # no offset
    ],
)
async def test_an_instant_must_be_rfc_3339_text_with_an_offset(api, slot_start):
    client, gateway = api
    resp = await client.post(
        "/v1/bookings", json=booking_with(slot_start=slot_start), headers={"Idempotency-Key": "k"}
    )
    assert resp.status_code == 422 and resp.json()["code"] == "invalid_request"
    assert [e["loc"] for e in resp.json()["errors"]] == [["body", "slot_start"]]
    assert gateway.submitted == []


@pytest.mark.parametrize(
    "slot_start", ["2026-03-10T08:30:00Z", "2026-03-10 09:30:00+01:00", "2026-03-10T09:30+01:00"]
)
async def test_rfc_3339_variants_are_taken(api, slot_start):
    client, gateway = api
    resp = await client.post(
        "/v1/bookings", json=booking_with(slot_start=slot_start), headers={"Idempotency-Key": "k"}
    )
    assert resp.status_code == 201
    assert gateway.submitted[0].slot_start == dt.datetime(2026, 3, 10, 8, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize("date", ["1773100800", "2026-03-10T00:00:00Z", "20260310"])
async def test_a_day_must_be_written_yyyy_mm_dd(api, date):
    client, _ = api
    resp = await client.get(f"/v1/stores/s1/availability?date={date}&exam_type=std")
    assert resp.status_code == 422 and resp.json()["code"] == "invalid_request"
    assert [e["loc"] for e in resp.json()["errors"]] == [["query", "date"]]


class OneBooking:
    """The projection, holding one confirmed booking at 2026-03-10 09:30 Berlin."""

    def __init__(self) -> None:
        start = dt.datetime(2026, 3, 10, 8, 30, tzinfo=dt.UTC)
        confirmed = BookingConfirmed(
            booking_id="b1", idempotency_key="k0", customer=Customer(customer_ref="c1"),
            channel="web", exam_type="std", optometrist_id="A", slot_start=start,
            slot_end=start + dt.timedelta(minutes=30), local_start="2026-03-10T09:30:00+01:00",
            timezone="Europe/Berlin",
        )  # fmt: skip
        envelope = new_envelope(
            confirmed, region="eu", store_id="s1", correlation_id="c", occurred_at=NOW
        )
        self.doc = confirmed_doc(envelope)

    async def wait_for(self, booking_id: str, within_s: float) -> Any:
        return self.doc if booking_id == "b1" else None

    async def by_idempotency_key(self, store_id: str, key: str) -> Any:
        return self.doc if (store_id, key) == ("s1", "k0") else None


async def test_a_reschedule_to_where_the_booking_already_is_changes_nothing(api):
    client, gateway = api
    app_context = client._transport.app.state.booking
    app_context.repo = OneBooking()
    app_context.gateway.settings = SimpleNamespace(projection_wait_s=0, processor_retain_days=30)
    key = {"Idempotency-Key": "r1"}
    same = await client.post(
        "/v1/bookings/b1/reschedule", json={"slot_start": "2026-03-10T09:30:00+01:00"}, headers=key
    )
    assert same.status_code == 200, same.text
    assert same.json()["local_start"] == "2026-03-10T09:30:00+01:00"
    assert gateway.submitted == []  # no command: no "moved" message, no reschedule counted
    moved = await client.post(
        "/v1/bookings/b1/reschedule", json={"slot_start": "2026-03-10T10:00:00+01:00"}, headers=key
    )
    assert moved.status_code == 201 and [type(c).__name__ for c in gateway.submitted] == [
        "RescheduleBooking"
    ]


def test_the_api_refuses_changes_to_the_days_the_processor_has_forgotten_west_of_utc_too():
    """The processor forgets a booking by its store-local date; the API's early refusal
    (409, not the processor's 404) follows the same rule, also where that date is behind UTC's."""
    honolulu = {
        "_id": "b1", "timezone": "Pacific/Honolulu",
        "slot_start": dt.datetime(2026, 12, 8, 2, 0, tzinfo=dt.UTC),  # 7 Dec 16:00 local
    }  # fmt: skip
    now = dt.datetime(2027, 1, 8, 1, 0, tzinfo=dt.UTC)
    assert retention_cutoff(now, 30) > dt.date(2026, 12, 7)  # the processor has forgotten it
    with pytest.raises(ProblemError) as refused:
        _check_retained(honolulu, 30, now)
    assert (refused.value.status, refused.value.code) == (409, "invalid_transition")


async def test_a_retry_refused_early_because_its_slot_has_started_gets_the_booking_it_made(api):
    """The first try was booked; its retry arrives after the slot began. The API's own early
    check would say `in_past`: the processor would have answered with the booking."""
    client, gateway = api
    app = client._transport.app
    app.state.booking.repo = OneBooking()
    after_start = dt.datetime(2026, 3, 10, 8, 35, tzinfo=dt.UTC)
    app.dependency_overrides[get_clock] = lambda: SimpleNamespace(now=lambda: after_start)
    retry = await client.post("/v1/bookings", json=BOOKING, headers={"Idempotency-Key": "k0"})
    assert retry.status_code == 201, retry.text
    assert retry.json()["booking_id"] == "b1" and gateway.submitted == []
    other_key = await client.post("/v1/bookings", json=BOOKING, headers={"Idempotency-Key": "k9"})
    assert (other_key.status_code, other_key.json()["code"]) == (422, "in_past")
    someone_else = booking_with(customer={"customer_ref": "c2"})
    reused = await client.post("/v1/bookings", json=someone_else, headers={"Idempotency-Key": "k0"})
    assert (reused.status_code, reused.json()["code"]) == (422, "in_past")
