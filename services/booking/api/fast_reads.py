"""The availability read without the framework: an ASGI middleware in front of the router.

`GET /v1/stores/{id}/availability` is the busiest route (every channel polls it) and, on a
cached view, its own work is a dict lookup. FastAPI's routing, parameter validation and
dependency solving cost several times that, so a request this middleware can answer on its own
is answered here: well-formed parameters (strictly: `date=YYYY-MM-DD`, `exam_type`, optional
`channel`) and a view in the API's coherent in-memory copy of Redis (`RedisViews.cached_view`).
The body is the one the route renders (`render_availability`, same cache), the view is counted
for analytics the same way, and the metrics middleware outside labels it with the route.

Everything else (a malformed or missing parameter, an unknown store, a view not in memory,
HEAD, ...) goes on to the FastAPI route, which validates and answers it, 4xx included. So the
fast path may only ever answer what the route would have answered; tests compare the two.
"""

from __future__ import annotations

import datetime as dt
import re
from types import SimpleNamespace
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from schemas.events.base import Channel
from services.booking.api.deps import BookingContext, unix_now
from services.booking.api.presenters import render_availability

TEMPLATE = "/v1/stores/{store_id}/availability"
_PATH = re.compile(r"^/v1/stores/([^/]{1,128})/availability$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CHANNELS = {c.value: c for c in Channel}
# What the metrics middleware reads to label a request with its route template.
_ROUTE = SimpleNamespace(path=TEMPLATE)


class FastAvailabilityReads:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await self._answer(scope) if scope["type"] == "http" else None
        if body is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = _ROUTE
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope: Scope) -> bytes | None:
        """The response body, or None to let the route decide."""
        if scope["method"] != "GET" or not scope["path"].endswith("/availability"):
            return None
        path = _PATH.match(scope["path"])
        context: BookingContext | None = getattr(scope["app"].state, "booking", None)
        if path is None or context is None:
            return None
        query = _query(scope["query_string"])
        if query is None:
            return None
        date, exam_type, channel = query
        raw = context.views.cached_view(path.group(1), date.isoformat())
        if raw is None:
            return None
        body = render_availability(raw, exam_type, await unix_now(scope["app"]))
        if body is not None and context.view_counter is not None:
            context.view_counter.record(path.group(1), date, exam_type, channel)
        return body


def _query(raw: bytes) -> tuple[dt.date, str, Channel] | None:
    """(date, exam_type, channel) when the query string is one the route surely accepts."""
    try:
        pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    except ValueError:
        return None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            return None  # repeated: the route's own rules decide which one counts
        params[name] = value
    date, exam_type = params.get("date", ""), params.get("exam_type", "")
    channel = _CHANNELS.get(params.get("channel", Channel.WEB.value))
    if channel is None or not 1 <= len(exam_type) <= 128 or not _DATE.match(date):
        return None
    try:
        return dt.date.fromisoformat(date), exam_type, channel
    except ValueError:
        return None
