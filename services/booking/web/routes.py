"""Pages (HTML shells + static JS/CSS) and the few JSON helpers only the pages need.

Everything else the pages do goes through the booking JSON API (`/v1/...`). Helpers that act for
a customer (book, cancel, reschedule through a manage link) call the same route functions the
API serves, so every rule (validation, idempotency, the processor's decision) is shared.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import quote

import orjson
from fastapi import APIRouter, FastAPI, Header, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from optisync_common.problems import ProblemError, problem_response
from optisync_common.resources import Resources
from schemas.events.base import END_REQUEST_INSTANT, FIRST_REQUEST_INSTANT, Actor, Channel
from schemas.events.booking import Customer
from services.booking.adapters.live import LiveFeed, LiveHub, sse_frame
from services.booking.api.deps import ClockDep, ContextDep, context_of
from services.booking.api.models import BookingRequest, CancelRequest, RescheduleRequest
from services.booking.api.routes import bookings as booking_routes
from services.booking.settings import BookingSettings
from services.booking.web import assets, ics
from services.booking.web.directory import StoreDirectory
from services.booking.web.i18n import pick_locale, server_text
from services.booking.web.phone import InvalidPhone, normalize_phone
from services.booking.web.tokens import (
    ExpiredToken,
    InvalidToken,
    ManageGrant,
    feed_token,
    manage_token,
    read_feed_token,
    read_manage_token,
)

router = APIRouter(include_in_schema=False)

# How long a page waits for the store directory after the process started.
DIRECTORY_WAIT_S = 5.0
PAGE_CHANNELS = frozenset({Channel.WEB, Channel.PHONE, Channel.FRONT_DESK})
FEED_PAST_DAYS, FEED_FUTURE_DAYS, FEED_LIMIT = 14, 400, 2000
KEEPALIVE_S = 15.0
STORE_LIST_LIMIT = 20


@dataclass
class PagesRuntime:
    """What the pages run besides requests (started in the API's lifespan)."""

    settings: BookingSettings
    hub: LiveHub
    directory: StoreDirectory
    feed: LiveFeed

    @classmethod
    def create(cls, settings: BookingSettings) -> PagesRuntime:
        hub, directory = LiveHub(), StoreDirectory()
        return cls(settings, hub, directory, LiveFeed(settings, hub, directory))

    async def on_startup(self, app: FastAPI, resources: Resources) -> None:
        app.state.pages = self
        await self.feed.start()

    async def on_shutdown(self, app: FastAPI, resources: Resources) -> None:
        await self.feed.stop()

    @property
    def secret(self) -> bytes:
        return self.settings.signing_secret.get_secret_value().encode()


def runtime_of(request: Request) -> PagesRuntime:
    runtime: PagesRuntime | None = getattr(request.app.state, "pages", None)
    if runtime is None:
        raise ProblemError(503, "unavailable", "the pages are still starting")
    return runtime


def base_url(request: Request, runtime: PagesRuntime) -> str:
    return (runtime.settings.public_url or str(request.base_url)).rstrip("/")


# ---- HTML ---------------------------------------------------------------------------------


def page(
    request: Request,
    name: str,
    *,
    title_key: str,
    boot: dict[str, Any],
    lang: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    locale = pick_locale(lang, request.headers.get("accept-language"))
    html = assets.render_page(name, locale=locale, title=server_text(locale, title_key), boot=boot)
    return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})


def error_page(
    request: Request,
    status: int,
    key: str,
    lang: str | None = None,
    *,
    retry_after_s: int | None = None,
) -> HTMLResponse:
    locale = pick_locale(lang, request.headers.get("accept-language"))
    html = assets.render_message(
        locale=locale,
        title=server_text(locale, "error_title"),
        text=server_text(locale, key),
        refresh_s=retry_after_s,
    )
    headers = {"cache-control": "no-store"}
    if retry_after_s is not None:
        headers["retry-after"] = str(retry_after_s)
    return HTMLResponse(html, status_code=status, headers=headers)


# A signed manage link names a booking that was confirmed; when its document is not there yet
# the projector is behind (a burst, a rebuild), so the answer is "try again", not "no such link".
NOT_PROJECTED_RETRY_S = 1


Lang = Annotated[str | None, Query(max_length=16)]


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/book", status_code=307)


@router.get("/book", response_class=HTMLResponse)
async def booking_page(
    request: Request, lang: Lang = None, store: Annotated[str | None, Query(max_length=128)] = None
) -> HTMLResponse:
    return page(request, "book", title_key="book_title", lang=lang, boot={"store_id": store})


@router.get("/manage/{token}", response_class=HTMLResponse)
async def manage_page(
    request: Request, token: Annotated[str, Path(max_length=1024)], lang: Lang = None
) -> HTMLResponse:
    runtime = runtime_of(request)
    try:
        grant = read_manage_token(runtime.secret, token, dt.datetime.now(dt.UTC))
    except ExpiredToken:
        return error_page(request, 410, "link_expired", lang)
    except InvalidToken:
        return error_page(request, 404, "link_invalid", lang)
    context = context_of(request)
    doc = await context.repo.wait_for(grant.booking_id, context.gateway.settings.projection_wait_s)
    if doc is None:
        return error_page(
            request, 503, "booking_not_ready", lang, retry_after_s=NOT_PROJECTED_RETRY_S
        )
    if doc["customer_ref"] != grant.customer_ref:
        return error_page(request, 404, "link_invalid", lang)
    lang = lang or doc["customer"].get("locale")
    boot = {
        "token": token,
        "booking": _booking_json(doc),
        "store": _store_json(runtime, doc["store_id"]),
        "ics_url": f"/manage/{token}/invite.ics",
    }
    return page(request, "manage", title_key="manage_title", lang=lang, boot=boot)


@router.get("/console/{store_id}", response_class=HTMLResponse)
async def console_page(
    request: Request, store_id: Annotated[str, Path(max_length=128)], lang: Lang = None
) -> HTMLResponse:
    runtime = runtime_of(request)
    await runtime.feed.wait_loaded(DIRECTORY_WAIT_S)
    store = runtime.directory.get(store_id)
    if store is None:
        return error_page(request, 404, "unknown_store", lang)
    feeds = {
        opt: f"/feeds/optometrists/{quote(opt)}.ics?token={feed_token(runtime.secret, opt)}"
        for opt in store.optometrists
    }
    boot = {"store": _store_json(runtime, store_id), "feeds": feeds}
    return page(request, "console", title_key="console_title", lang=lang, boot=boot)


@router.get("/console/{store_id}/events")
async def console_events(
    request: Request, store_id: Annotated[str, Path(max_length=128)]
) -> StreamingResponse:
    """Server-sent events of one store: bookings as decided, changes, waitlist events and
    routed customer messages. A comment every few seconds keeps proxies from closing it."""
    runtime = runtime_of(request)

    async def stream() -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        yield sse_frame({"kind": "hello", "store_id": store_id})
        with runtime.hub.subscribe(store_id) as queue:
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                yield sse_frame(message)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


@router.get("/optometrist/{optometrist_id}", response_class=HTMLResponse)
async def optometrist_page(
    request: Request, optometrist_id: Annotated[str, Path(max_length=128)], lang: Lang = None
) -> HTMLResponse:
    runtime = runtime_of(request)
    await runtime.feed.wait_loaded(DIRECTORY_WAIT_S)
    stores = [
        _store_json(runtime, s.store_id)
        for s in runtime.directory.stores.values()
        if optometrist_id in s.optometrists and s.timezone is not None
    ]
    if not stores:
        return error_page(request, 404, "unknown_optometrist", lang)
    token = feed_token(runtime.secret, optometrist_id)
    boot = {
        "optometrist_id": optometrist_id,
        "name": next(
            (
                s["optometrists"][optometrist_id]
                for s in stores
                if optometrist_id in s["optometrists"]
            ),
            optometrist_id,
        ),
        "stores": stores,
        "feed_url": f"/feeds/optometrists/{quote(optometrist_id)}.ics?token={token}",
    }
    return page(request, "optometrist", title_key="optometrist_title", lang=lang, boot=boot)


@router.get("/offers/{token}", response_class=HTMLResponse)
async def offer_page(
    request: Request, token: Annotated[str, Path(max_length=256)], lang: Lang = None
) -> HTMLResponse:
    return page(request, "offer", title_key="offer_title", lang=lang, boot={"token": token})


@router.get("/pages/static/{name}")
async def static_asset(request: Request, name: Annotated[str, Path(max_length=64)]) -> Response:
    asset = assets.static(name)
    if asset is None:
        raise ProblemError(404, "not_found", f"no asset {name!r}")
    headers = {
        "cache-control": "public, max-age=31536000, immutable",
        "etag": asset.etag,
        "vary": "accept-encoding",
    }
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["content-encoding"] = "gzip"
        return Response(asset.gzipped, media_type=asset.media_type, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


# ---- JSON helpers for the pages -----------------------------------------------------------


@router.get("/pages/api/stores")
async def store_list(
    request: Request,
    q: Annotated[str, Query(max_length=100)] = "",
    lat: Annotated[float | None, Query(ge=-90, le=90)] = None,
    lon: Annotated[float | None, Query(ge=-180, le=180)] = None,
) -> dict[str, Any]:
    runtime = runtime_of(request)
    await runtime.feed.wait_loaded(DIRECTORY_WAIT_S)
    near = (lat, lon) if lat is not None and lon is not None else None
    # A first screenful; the search narrows it.
    return {"items": runtime.directory.listing(q, near, limit=STORE_LIST_LIMIT)}


@router.get("/pages/api/stores/{store_id}")
async def store_detail(request: Request, store_id: Annotated[str, Path(max_length=128)]) -> Any:
    runtime = runtime_of(request)
    await runtime.feed.wait_loaded(DIRECTORY_WAIT_S)
    if runtime.directory.get(store_id) is None:
        raise ProblemError(404, "unknown_store", f"no store {store_id!r}")
    return _store_json(runtime, store_id)


class _PageModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Naive times pass here and get the pages' own `naive_datetime` answer; aware ones out of range
# would overflow converting to the store's zone.
PageInstant = Annotated[dt.datetime, Field(ge=FIRST_REQUEST_INSTANT, lt=END_REQUEST_INSTANT)]


class PageBooking(_PageModel):
    store_id: str = Field(min_length=1, max_length=128)
    exam_type: str = Field(min_length=1, max_length=128)
    slot_start: PageInstant
    name: str = Field(max_length=200)
    phone: str = Field(max_length=60)
    locale: Literal["zh-CN", "en"] = "en"
    channel: Literal["web", "phone", "front_desk"] = "web"
    optometrist_id: str | None = Field(default=None, max_length=128)


class ManageReschedule(_PageModel):
    slot_start: PageInstant


IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=256)]


def customer_ref_for(phone: str) -> str:
    """Pseudonymous and stable: the same phone books as the same customer on every visit
    (so a double submit from two tabs is recognised as the same customer)."""
    return "tel-" + hashlib.sha256(phone.encode()).hexdigest()[:24]


@router.post("/pages/api/bookings")
async def book_from_page(
    request: Request,
    body: PageBooking,
    context: ContextDep,
    clock: ClockDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    runtime = runtime_of(request)
    name = " ".join(body.name.split())
    if not name or any(ord(ch) < 32 for ch in name):
        raise ProblemError(422, "invalid_name", "enter the name the booking is for")
    try:
        phone = normalize_phone(body.phone)
    except InvalidPhone as exc:
        raise ProblemError(422, "invalid_phone", f"invalid phone number: {exc}") from exc
    if body.slot_start.tzinfo is None:
        raise ProblemError(422, "naive_datetime", "slot_start needs a UTC offset")
    customer = Customer(
        customer_ref=customer_ref_for(phone), name=name, phone=phone, locale=body.locale
    )
    request_body = BookingRequest(
        store_id=body.store_id,
        exam_type=body.exam_type,
        slot_start=body.slot_start,
        optometrist_id=body.optometrist_id,
        channel=Channel(body.channel),
        customer=customer,
    )
    response = await booking_routes.create_booking(
        request_body, context, clock, idempotency_key or f"page:{uuid.uuid4().hex}"
    )
    return _with_links(request, runtime, response, customer.customer_ref, clock.now())


def _with_links(
    request: Request, runtime: PagesRuntime, response: Response, customer_ref: str, now: dt.datetime
) -> Response:
    """The API's answer plus the manage and calendar links of the booking it names."""
    answer = orjson.loads(bytes(response.body))
    booking_id = answer.get("booking_id") if isinstance(answer, dict) else None
    if response.status_code in (200, 201, 202) and booking_id:
        expires = now + dt.timedelta(days=runtime.settings.manage_link_ttl_days)
        token = manage_token(runtime.secret, booking_id, customer_ref, expires)
        answer["manage_url"] = f"{base_url(request, runtime)}/manage/{token}"
        answer["ics_url"] = f"{base_url(request, runtime)}/manage/{token}/invite.ics"
        store = runtime.directory.get(answer.get("store_id", ""))
        if store is not None and answer.get("optometrist_id") in store.optometrists:
            answer["optometrist_name"] = store.optometrists[answer["optometrist_id"]]
    return Response(
        orjson.dumps(answer),
        status_code=response.status_code,
        media_type=response.media_type,
    )


async def _granted(
    request: Request, token: str
) -> tuple[PagesRuntime, ManageGrant, dict[str, Any]]:
    runtime = runtime_of(request)
    try:
        grant = read_manage_token(runtime.secret, token, dt.datetime.now(dt.UTC))
    except ExpiredToken as exc:
        raise ProblemError(410, "link_expired", "this link has expired") from exc
    except InvalidToken as exc:
        raise ProblemError(404, "link_invalid", "this link is not valid") from exc
    context = context_of(request)
    doc = await context.repo.wait_for(grant.booking_id, context.gateway.settings.projection_wait_s)
    if doc is None:
        raise ProblemError(
            503, "booking_not_ready", "the booking is not readable yet; retry in a moment",
            headers={"retry-after": str(NOT_PROJECTED_RETRY_S)},
        )  # fmt: skip
    if doc["customer_ref"] != grant.customer_ref:
        raise ProblemError(404, "link_invalid", "this link is not valid")
    return runtime, grant, doc


Token = Annotated[str, Path(max_length=1024)]


@router.get("/pages/api/manage/{token}")
async def manage_read(request: Request, token: Token) -> Any:
    _, _, doc = await _granted(request, token)
    return _booking_json(doc)


@router.post("/pages/api/manage/{token}/cancel")
async def manage_cancel(
    request: Request,
    token: Token,
    context: ContextDep,
    clock: ClockDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    _, grant, _ = await _granted(request, token)
    return await booking_routes.cancel_booking(
        grant.booking_id,
        CancelRequest(by=Actor.CUSTOMER, reason="cancelled through the manage link"),
        context,
        clock,
        idempotency_key or f"page:{uuid.uuid4().hex}",
    )


@router.post("/pages/api/manage/{token}/reschedule")
async def manage_reschedule(
    request: Request,
    token: Token,
    body: ManageReschedule,
    context: ContextDep,
    clock: ClockDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    _, grant, _ = await _granted(request, token)
    if body.slot_start.tzinfo is None:
        raise ProblemError(422, "naive_datetime", "slot_start needs a UTC offset")
    return await booking_routes.reschedule_booking(
        grant.booking_id,
        RescheduleRequest(slot_start=body.slot_start),
        context,
        clock,
        idempotency_key or f"page:{uuid.uuid4().hex}",
    )


# ---- calendars ----------------------------------------------------------------------------

CALENDAR = "text/calendar; charset=utf-8"


@router.get("/manage/{token}/invite.ics")
async def booking_invite(request: Request, token: Token) -> Response:
    runtime, _, doc = await _granted(request, token)
    store = runtime.directory.get(doc["store_id"])
    store_name = store.name if store else doc["store_id"]
    exam = store.exam_types.get(doc["exam_type"]) if store else None
    manage_url = f"{base_url(request, runtime)}/manage/{token}"
    event = ics.booking_event(
        doc,
        summary=f"{exam.name if exam else doc['exam_type']} – {store_name}",
        location=", ".join(p for p in (store_name, store.address if store else None) if p),
        description=f"{doc.get('local_start', '')}\n{manage_url}".strip(),
        url=manage_url,
    )
    text = ics.invite(event, organizer=store_name, timezone=doc.get("timezone"))
    return Response(
        text,
        media_type=CALENDAR,
        headers={
            "content-disposition": f'attachment; filename="booking-{doc["_id"]}.ics"',
            "cache-control": "no-store",
        },
    )


@router.get("/feeds/optometrists/{optometrist_id}.ics")
async def optometrist_feed(
    request: Request,
    optometrist_id: Annotated[str, Path(max_length=128)],
    context: ContextDep,
    token: Annotated[str, Query(max_length=512)],
) -> Response:
    runtime = runtime_of(request)
    try:
        if read_feed_token(runtime.secret, token) != optometrist_id:
            raise InvalidToken("for another optometrist")
    except InvalidToken as exc:
        raise ProblemError(404, "link_invalid", "this feed link is not valid") from exc
    now = dt.datetime.now(dt.UTC)
    query = {
        "optometrist_id": optometrist_id,
        "slot_start": {
            "$gte": now - dt.timedelta(days=FEED_PAST_DAYS),
            "$lt": now + dt.timedelta(days=FEED_FUTURE_DAYS),
        },
    }
    docs, _ = await context.repo.page(query, limit=FEED_LIMIT, cursor=None)
    events = []
    for doc in docs:
        store = runtime.directory.get(doc["store_id"])
        exam = store.exam_types.get(doc["exam_type"]) if store else None
        customer = (doc.get("customer") or {}).get("name") or ""
        exam_name = exam.name if exam else doc["exam_type"]
        events.append(
            ics.booking_event(
                doc,
                summary=" · ".join(p for p in (exam_name, customer) if p),
                location=store.name if store else doc["store_id"],
            )
        )
    text = ics.render_calendar(
        events, method="PUBLISH", organizer="OptiSync", name=f"OptiSync {optometrist_id}"
    )
    return Response(text, media_type=CALENDAR, headers={"cache-control": "no-store"})


# ---- shapes -------------------------------------------------------------------------------


def _booking_json(doc: dict[str, Any]) -> Any:
    from services.booking.api.presenters import booking_from_doc

    return booking_from_doc(doc).model_dump(mode="json")


def _store_json(runtime: PagesRuntime, store_id: str) -> dict[str, Any]:
    store = runtime.directory.get(store_id)
    if store is None:
        return {"store_id": store_id, "name": store_id, "exam_types": [], "optometrists": {}}
    return {**store.public(), "optometrists": dict(store.optometrists)}


def problem(status: int, code: str, detail: str) -> Response:
    return problem_response(status, code, detail)
