"""FastAPI dependencies (full-stack-fastapi-template style: `XxxDep = Annotated[...]`)."""

from __future__ import annotations

import datetime as dt
import inspect
import time
from dataclasses import dataclass
from typing import Annotated, Any, cast

from fastapi import Depends, FastAPI, Header, Query, Request

from optisync_common.clock import Clock, SystemClock
from optisync_common.problems import PROBLEM_JSON, ProblemError
from services.booking.adapters.bookings import BookingRepository, Document, InvalidCursor
from services.booking.adapters.replies import CommandOutcomes
from services.booking.adapters.view_counter import ViewCounter
from services.booking.adapters.views import RedisViews, StoreCatalog
from services.booking.api.commands import CommandGateway
from services.booking.api.models import Accepted, BookingPage, Problem
from services.booking.api.presenters import booking_from_doc


@dataclass(frozen=True)
class BookingContext:
    """What the routes use, built once at startup (see entrypoints/http.py)."""

    views: RedisViews
    repo: BookingRepository
    outcomes: CommandOutcomes
    gateway: CommandGateway
    view_counter: ViewCounter | None = None  # counts availability reads for analytics


def context_of(request: Request) -> BookingContext:
    context: BookingContext | None = getattr(request.app.state, "booking", None)
    if context is None:
        raise ProblemError(503, "unavailable", "the booking API is still starting")
    return context


# Dependencies are `async def`: FastAPI runs plain functions in a thread pool, which costs more
# than the availability route itself.
async def get_context(request: Request) -> BookingContext:
    return context_of(request)


_SYSTEM_CLOCK = SystemClock()


async def get_clock() -> Clock:
    """Overridden in tests (`app.dependency_overrides[get_clock]`) to move time."""
    return _SYSTEM_CLOCK


async def now_of(app: FastAPI) -> dt.datetime:
    """The routes' clock where no dependency is solved (the fast paths, the availability
    route): `get_clock`, or what tests override it with."""
    clock = app.dependency_overrides.get(get_clock, get_clock)()
    if inspect.isawaitable(clock):
        clock = await clock
    return cast(Clock, clock).now()


async def unix_now(app: FastAPI) -> float:
    """`now_of` in Unix seconds; on the system clock without a datetime (the availability
    read is benchmarked to the bone)."""
    if get_clock not in app.dependency_overrides:
        return time.time()
    return (await now_of(app)).timestamp()


ContextDep = Annotated[BookingContext, Depends(get_context)]
ClockDep = Annotated[Clock, Depends(get_clock)]


def one_idempotency_key(
    request: Request,
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=256,
            description="required on state-changing requests; a retry with the same key "
            "returns the same result for 24 h",
        ),
    ] = None,
) -> str | None:
    """The request's one Idempotency-Key. Several (a client's and a proxy's, say) are refused:
    taking the first would make which retries count as the same request a matter of chance."""
    if len(request.headers.getlist("idempotency-key")) > 1:
        raise ProblemError(
            400, "duplicate_idempotency_key", "send one Idempotency-Key header, not several"
        )
    return key


IdempotencyKeyHeader = Annotated[str | None, Depends(one_idempotency_key)]


def require_idempotency_key(key: str | None) -> str:
    if not key:
        raise ProblemError(
            400, "missing_idempotency_key", "send an Idempotency-Key header with this request"
        )
    return key


async def store_catalog(context: BookingContext, store_id: str) -> StoreCatalog:
    catalog = await context.views.catalog(store_id)
    if catalog is None:
        raise ProblemError(404, "unknown_store", f"no store {store_id!r}")
    return catalog


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error answers (problem+json) a route can give."""
    return {
        status: {
            "model": Problem,  # registers the schema the problem+json entry refers to
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
            "description": "problem details",
        }
        for status in statuses
    }


# OpenAPI entry of a command's 202: no decision within the deadline, poll the status URL.
ACCEPTED_RESPONSE: dict[int | str, dict[str, Any]] = {
    202: {"model": Accepted, "description": "no decision within the deadline; poll status_url"}
}


@dataclass(frozen=True)
class PageParams:
    limit: int
    cursor: str | None

    async def fetch(self, repo: BookingRepository, query: Document) -> BookingPage:
        try:
            docs, next_cursor = await repo.page(query, limit=self.limit, cursor=self.cursor)
        except InvalidCursor as exc:
            raise ProblemError(400, "invalid_cursor", str(exc)) from exc
        return BookingPage(items=[booking_from_doc(d) for d in docs], next_cursor=next_cursor)


async def page_params(
    limit: Annotated[int, Query(ge=1, le=200, description="page size")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=512, description="next_cursor of the previous page")
    ] = None,
) -> PageParams:
    return PageParams(limit, cursor)


PageDep = Annotated[PageParams, Depends(page_params)]
