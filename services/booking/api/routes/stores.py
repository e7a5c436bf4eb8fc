"""Per-store reads: the free-slot view (Redis only) and the day's bookings (MongoDB)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query, Request, Response

from optisync_common.http import LocalDayQuery
from schemas.events.base import Channel
from services.booking.adapters.bookings import BookingStatus
from services.booking.api.deps import (
    ContextDep,
    PageDep,
    context_of,
    problems,
    store_catalog,
    unix_now,
)
from services.booking.api.models import Availability, BookingPage
from services.booking.api.presenters import empty_availability, render_availability
from services.booking.api.validation import exam_type_of

router = APIRouter(prefix="/v1/stores", tags=["stores"])

StoreId = Annotated[str, Path(min_length=1, max_length=128)]


@router.get(
    "/{store_id}/availability",
    response_model=Availability,
    responses=problems(404, 422, 503),
    summary="Free start times of one exam type on one store-local day",
)
async def availability(
    store_id: StoreId,
    date: LocalDayQuery,
    exam_type: Annotated[str, Query(min_length=1, max_length=128)],
    request: Request,
    channel: Annotated[Channel, Query(description="who is looking (analytics)")] = Channel.WEB,
) -> Response:
    # The benchmarked hot path: the view from the API's coherent copy of Redis (one GET on a
    # miss), a cached rendering, no dependency resolution.
    context = context_of(request)
    raw = await context.views.view(store_id, date)
    now = await unix_now(request.app)
    body = render_availability(raw, exam_type, now) if raw is not None else None
    if body is None:
        catalog = await store_catalog(context, store_id)
        exam = exam_type_of(catalog, exam_type)
        assert catalog.timezone is not None
        duration = exam.duration_minutes
        body = empty_availability(store_id, date, catalog.timezone, exam_type, duration)
    if context.view_counter is not None:
        context.view_counter.record(store_id, date, exam_type, channel)
    return Response(body, media_type="application/json")


@router.get(
    "/{store_id}/bookings",
    response_model=BookingPage,
    responses=problems(400, 404, 422, 503),
    summary="A store's bookings on one local day, by start time",
)
async def store_bookings(
    store_id: StoreId,
    date: LocalDayQuery,
    context: ContextDep,
    page: PageDep,
    status: BookingStatus | None = None,
) -> BookingPage:
    catalog = await store_catalog(context, store_id)
    assert catalog.timezone is not None
    tz = ZoneInfo(catalog.timezone)
    first = dt.datetime.combine(date, dt.time(), tzinfo=tz).astimezone(dt.UTC)
    after = dt.datetime.combine(date + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    query: dict[str, object] = {
        "store_id": store_id,
        "slot_start": {"$gte": first, "$lt": after.astimezone(dt.UTC)},
    }
    if status is not None:
        query["status"] = status.value
    return await page.fetch(context.repo, query)
