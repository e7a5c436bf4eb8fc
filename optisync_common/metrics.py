"""Prometheus metrics: one registry per process, HTTP metrics middleware, `/metrics` body."""

from __future__ import annotations

import gc
import time
from functools import lru_cache
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


@lru_cache(maxsize=4096)
def _consumed_child(service: str, topic: str, event_type: str) -> Any:
    return EVENTS_CONSUMED.labels(service, topic, event_type)


def count_consumed(service: str, topic: str, event_type: str) -> None:
    """One event consumed; the labelled child is looked up once (bounded: services x topics x
    event types), as a label lookup costs more than the increment on a hot consumer."""
    _consumed_child(service, topic, event_type).inc()


EVENTS_DEAD_LETTERED = Counter(
    "optisync_events_dead_lettered_total", "Messages sent to a DLQ", ["service", "topic"]
)


GC_PAUSES = Histogram(
    "optisync_gc_pause_seconds",
    "Cyclic garbage collections by generation: the event loop stands still for each",
    ["generation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


class _GcPauseTimer:
    def __init__(self) -> None:
        self.children = [GC_PAUSES.labels(str(generation)) for generation in range(3)]
        self.started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.children[info["generation"]].observe(time.perf_counter() - self.started)


_GC_PAUSE_TIMER = _GcPauseTimer()


def observe_gc_pauses() -> None:
    """Time every collection from now on (once per process, however often called): a pause
    holds every request and batch in flight, so it shows in latency tails."""
    if _GC_PAUSE_TIMER not in gc.callbacks:
        gc.callbacks.append(_GC_PAUSE_TIMER)


def metrics_response() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _route_template(scope: Scope) -> str:
    # Label by route template, not raw path, so ids do not explode the cardinality. The router
    # records the matched route in the scope; no second matching pass per request.
    route = scope.get("route")
    return str(getattr(route, "path", "unmatched")) if route is not None else "unmatched"


class HttpMetrics:
    """Pure ASGI middleware (Starlette's BaseHTTPMiddleware costs a task per request)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service
        # Label lookups cost more than the observation itself on a hot route: keep the
        # children (bounded: route templates x methods x statuses).
        self._latency: dict[tuple[str, str], Any] = {}
        self._requests: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = _route_template(scope)
            method = scope["method"]
            latency = self._latency.get((method, route))
            if latency is None:
                latency = self._latency[(method, route)] = HTTP_LATENCY.labels(
                    self.service, method, route
                )
            latency.observe(time.perf_counter() - started)
            counter = self._requests.get((method, route, status))
            if counter is None:
                counter = self._requests[(method, route, status)] = HTTP_REQUESTS.labels(
                    self.service, method, route, str(status)
                )
            counter.inc()
