"""`POST /v1/bookings` without the framework's request handling: an ASGI middleware.

Every channel books through this route, and FastAPI's routing, dependency solving and body
handling cost about as much API CPU as the booking's own work (checks, the Kafka produce, the
wait for the decision). So a request this middleware can take on its own is taken here:
a JSON body (`Content-Type: application/json`) that `BookingRequest` accepts, at most one
`Idempotency-Key` header the route would accept, and every check of `prepare_booking` passed.
The booking is then prepared and submitted by the very functions the route calls.

Anything else (malformed JSON, a schema error, an unknown store, a slot off the grid, a missing
key, ...) goes on to the FastAPI route with the body replayed, and the route answers it, 4xx
included. Nothing is produced before that hand-over, so the fast path only ever answers what
the route would have answered; tests compare the two.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from optisync_common.http import read_body, replay
from optisync_common.problems import ProblemError
from services.booking.api.deps import BookingContext, get_context, now_of
from services.booking.api.models import BookingRequest
from services.booking.api.routes.bookings import PreparedBooking, prepare_booking

PATH = "/v1/bookings"
_ROUTE = SimpleNamespace(path=PATH)  # what the metrics middleware labels the request with
_KEY_HEADER = b"idempotency-key"
_MAX_KEY = 256  # as the route's header parameter


class FastBookingRequests:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        context = _context(scope)
        if context is None:
            await self.app(scope, receive, send)
            return
        received = await read_body(receive)
        booking = await _prepare(context, scope, received)
        if booking is None:
            await self.app(scope, replay(received, receive), send)
            return
        scope["route"] = _ROUTE
        try:
            response = await booking.submit(context.gateway)
        except ProblemError as exc:  # as the app's problem handler renders it
            response = exc.response()
        await response(scope, receive, send)


def _context(scope: Scope) -> BookingContext | None:
    """The booking context when this request is one the fast path may take."""
    if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
        return None
    app = scope["app"]
    if get_context in app.dependency_overrides:
        return None
    return getattr(app.state, "booking", None)


async def _prepare(
    context: BookingContext, scope: Scope, received: list[Message]
) -> PreparedBooking | None:
    if not received or received[-1]["type"] != "http.request":
        return None  # the client went away: the route sees that as it happens
    acceptable, key = _idempotency_key(scope)
    if not acceptable or not _is_json(scope):
        return None
    try:
        body = BookingRequest.model_validate(
            json.loads(b"".join(m.get("body", b"") for m in received))
        )
        return await prepare_booking(context, body, key, await now_of(scope["app"]))
    except Exception:  # any reason the route would refuse it: the route says which
        return None


def _idempotency_key(scope: Scope) -> tuple[bool, str | None]:
    """(False, None) when the route must judge the header (repeated, empty or too long),
    else (True, its value or None when absent)."""
    values = [value for header, value in scope["headers"] if header == _KEY_HEADER]
    if not values:
        return True, None
    if len(values) > 1 or not 1 <= len(values[0]) <= _MAX_KEY:
        return False, None
    return True, values[0].decode("latin-1")


def _is_json(scope: Scope) -> bool:
    for header, value in scope["headers"]:
        if header == b"content-type":
            return bool(value.split(b";", 1)[0].strip().lower() == b"application/json")
    return False
