"""Prometheus metrics: one registry per process, HTTP metrics middleware, `/metrics` body."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

HTTP_REQUESTS = Counter(
    "optisync_http_requests_total", "HTTP requests", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "optisync_http_request_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS_CONSUMED = Counter(
    "optisync_events_consumed_total", "Events consumed", ["service", "topic", "type"]
)
EVENTS_DEAD_LETTERED = Counter(
    "optisync_events_dead_lettered_total", "Messages sent to a DLQ", ["service", "topic"]
)


def metrics_response() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _route_template(request: Request) -> str:
    # Label by route template, not raw path, so ids do not explode the cardinality.
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match == Match.FULL:
            return str(getattr(route, "path", request.url.path))
    return "unmatched"


def http_metrics_middleware(
    service: str,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    async def middleware(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = _route_template(request)
        HTTP_LATENCY.labels(service, request.method, route).observe(time.perf_counter() - started)
        HTTP_REQUESTS.labels(service, request.method, route, str(response.status_code)).inc()
        return response

    return middleware
