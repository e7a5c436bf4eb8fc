"""FastAPI app factory: health, readiness, metrics, problem details and a body-size limit
on every service, so a service module only adds its own routers."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BeforeValidator
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from optisync_common.health import ReadinessCheck, run_checks
from optisync_common.logging import configure_logging, get_logger
from optisync_common.metrics import HttpMetrics, metrics_response, observe_gc_pauses
from optisync_common.problems import install_problem_handlers, problem_response
from optisync_common.resources import Resources, open_resources
from optisync_common.settings import ServiceSettings
from schemas.events.base import END_REQUEST_DAY, FIRST_REQUEST_DAY, day_text

log = get_logger(__name__)

# A shutdown hook still running after this is given up (logged), so that the next hook and the
# resources' own shutdown still run: a stop must end (Kubernetes kills the pod anyway).
SHUTDOWN_HOOK_S = 10.0

Hook = Callable[[FastAPI, Resources], Awaitable[None]]


class BodySizeLimit:
    """Reject bodies over `limit` bytes with 413, counting streamed chunks too. The whole body
    is read before the app sees any of it: an app given the first part of an oversized
    streamed body acted on it (a booking made, then answered 413)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is None and b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body (a GET): nothing to count
            return
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._reject(scope, receive, send)
            return
        try:
            body = await read_body(receive, self.limit)
        except BodyTooLarge:
            await self._reject(scope, receive, send)
            return
        await self.app(scope, replay(body, receive), send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413, "payload_too_large", f"request bodies are limited to {self.limit} bytes"
        )
        await response(scope, receive, send)


class BodyTooLarge(Exception):
    pass


async def read_body(receive: Receive, limit: int | None = None) -> list[Message]:
    """A request's messages up to the end of its body (or a disconnect). Raises BodyTooLarge
    as soon as the body is over `limit` bytes."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        size += len(message.get("body", b""))
        if limit is not None and size > limit:
            raise BodyTooLarge(f"over {limit} bytes")
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def replay(messages: list[Message], receive: Receive) -> Receive:
    """A `receive` that gives `messages` again, then goes on with `receive` (a disconnect)."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


def health_router() -> APIRouter:
    router = APIRouter(tags=["ops"])

    @router.get("/healthz", summary="Liveness: the process answers and can go on")
    async def healthz(request: Request) -> JSONResponse:
        # Only what a restart would cure: a dependency away is for readiness, not this.
        checks = getattr(request.app.state, "liveness_checks", {})
        if not checks:
            return JSONResponse({"status": "ok"})
        alive, report = await run_checks(checks)
        return JSONResponse(
            {"status": "ok" if alive else "failed", "checks": report},
            status_code=200 if alive else 503,
        )

    @router.get("/readyz", summary="Readiness: every dependency answers")
    async def readyz(request: Request) -> JSONResponse:
        resources: Resources = request.app.state.resources
        checks = {**resources.readiness_checks(), **request.app.state.extra_checks}
        ready, report = await run_checks(checks)
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "checks": report},
            status_code=200 if ready else 503,
        )

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return metrics_response()

    return router


async def _shut_down(hook: Hook, app: FastAPI, resources: Resources) -> None:
    try:
        await asyncio.wait_for(hook(app, resources), SHUTDOWN_HOOK_S)
    except TimeoutError:
        name = getattr(hook, "__qualname__", repr(hook))
        log.error("shutdown_hook_timed_out", hook=name, after_s=SHUTDOWN_HOOK_S)


def create_app(
    settings: ServiceSettings,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter] = (),
    kafka: bool = True,
    mongo: bool = True,
    redis: bool = True,
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
    extra_checks: Mapping[str, ReadinessCheck] | None = None,
    liveness_checks: Mapping[str, ReadinessCheck] | None = None,
    middleware: Sequence[Callable[[ASGIApp], ASGIApp]] = (),
) -> FastAPI:
    """`middleware`: a service's own ASGI middleware (a class taking the next app), run inside
    the body-size limit and the request metrics. `liveness_checks`: what fails `/healthz`
    (a state only a restart cures); `extra_checks` fail `/readyz` only."""
    configure_logging(settings.service_name, settings.log_level)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with open_resources(settings, kafka=kafka, mongo=mongo, redis=redis) as resources:
            app.state.resources = resources
            app.state.settings = settings
            app.state.extra_checks = dict(extra_checks or {})
            for hook in on_startup:
                await hook(app, resources)
            log.info("service_started", port=settings.http_port, region=settings.region)
            try:
                yield {}
            finally:
                for hook in on_shutdown:
                    await _shut_down(hook, app, resources)

    app = FastAPI(
        title=title,
        description=description,
        version="1.0.0",
        lifespan=lifespan,
        # Prometheus (`/metrics`) and structlog are our telemetry; FastAPI's OpenTelemetry
        # bridge would otherwise look for providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.liveness_checks = dict(liveness_checks or {})
    install_problem_handlers(app)
    for extra in reversed(middleware):
        app.add_middleware(extra)
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)
    app.add_middleware(HttpMetrics, service=settings.service_name)
    app.include_router(health_router())
    for router in routers:
        app.include_router(router)
    return app


# The collector's thresholds (`gc.set_threshold`) of a service whose memory holds little but
# work in flight: collections far apart (with the defaults a busy service collected every few
# hundred allocations, and each full collection walked all of its state with the loop
# stopped); the booking API went through a 30 s step at 500 bookings/s without one.
GC_THRESHOLDS = (50_000, 50, 100)


def serve(
    app: FastAPI, settings: ServiceSettings, gc_thresholds: tuple[int, int, int] = GC_THRESHOLDS
) -> None:
    """Run one service's HTTP app with uvicorn (uvloop + httptools when installed)."""
    import uvicorn

    gc.collect()
    gc.freeze()  # the imported code, out of the collector's way for good
    gc.set_threshold(*gc_thresholds)
    observe_gc_pauses()

    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,  # our structlog JSON config stays in charge
        access_log=False,  # request metrics cover this without a log line per request
        proxy_headers=True,
        # Longer than clients' and load balancers' idle timeouts, so the server is not the one
        # closing a kept-alive connection just as a client reuses it (a reset request).
        timeout_keep_alive=75,
    )


# FastAPI types the bounds as numbers; pydantic compares dates with them just as well.
_REQUEST_DAYS: dict[str, Any] = {"ge": FIRST_REQUEST_DAY, "lt": END_REQUEST_DAY}

LocalDayQuery = Annotated[
    dt.date,
    BeforeValidator(day_text),
    Query(description="store-local date, YYYY-MM-DD", **_REQUEST_DAYS),
]
"""A date query parameter: YYYY-MM-DD only (pydantic would also take a Unix timestamp or a
midnight date-time), within the days a request may name (`RequestDay`: at the ends of the
calendar, converting a day to UTC overflows, a 500 instead of a 422)."""
