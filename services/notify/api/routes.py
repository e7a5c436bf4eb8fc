"""Notify HTTP API: inbound channel webhooks, routing rules, per-store/per-chain channel and
reminder configuration and delivery status. (The optometrist's result summary is a booking
command on the booking API; notify sends the resulting `ExamResultPosted` on.)"""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from optisync_common.clock import Clock, SystemClock
from optisync_common.problems import ProblemError
from optisync_common.resources import Resources
from schemas.envelope import deterministic_event_id, new_envelope
from schemas.events.base import Channel, Id, Locale
from schemas.events.messages import MessageReceived, StaffRole
from services.notify.adapters.storage import NotifyRepository
from services.notify.domain.routing import RoutingRule
from services.notify.domain.signing import SIGNATURE_HEADER, SignatureError, staff_of_token, verify
from services.notify.settings import NotifySettings

router = APIRouter(prefix="/v1", tags=["notify"])


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InboundMessage(StrictModel):
    message_id: Id = Field(description="the channel's message id (idempotency)")
    customer_ref: Id
    store_id: Id
    text: str = Field(min_length=1, max_length=4000)
    locale: Locale | None = None
    conversation_id: Id | None = None


class Accepted(BaseModel):
    status: str
    message_id: str
    event_id: str


class RuleBody(StrictModel):
    locale: str = Field(pattern=r"^(\*|[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*)$", examples=["zh-CN"])
    keywords: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(min_length=1)
    role: StaffRole
    priority: int = Field(default=100, ge=0, le=10000)


class Rule(RuleBody):
    rule_id: str


class AdapterSpec(StrictModel):
    kind: str = Field(pattern=r"^(webhook|smtp)$")
    url: str | None = Field(default=None, pattern=r"^https?://")
    secret: str | None = Field(default=None, min_length=16)
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    sender: str | None = None

    def checked(self) -> dict[str, Any]:
        needed = ("url",) if self.kind == "webhook" else ("host", "port", "sender")
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ProblemError(
                422, "invalid_channel_config", f"a {self.kind} adapter needs {', '.join(missing)}"
            )
        return self.model_dump(exclude_none=True)


ChannelKey = Annotated[str, Field(pattern=r"^(\*|[a-z_]+)$")]


class ChainConfig(StrictModel):
    reminder_offsets_min: list[Annotated[int, Field(ge=5, le=20160)]] | None = Field(
        default=None, max_length=5, examples=[[1440, 120]]
    )
    channels: dict[ChannelKey, AdapterSpec] | None = None


class StoreConfig(ChainConfig):
    chain_id: Id | None = None
    locale: Locale | None = None
    timezone: str | None = None
    name: str | None = Field(default=None, max_length=200)


def repo(request: Request) -> NotifyRepository:
    resources: Resources = request.app.state.resources
    return NotifyRepository(resources.db)


def settings_of(request: Request) -> NotifySettings:
    settings: NotifySettings = request.app.state.settings
    return settings


def clock_of(request: Request) -> Clock:
    return getattr(request.app.state, "clock", None) or SystemClock()


def staff(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """Staff-only endpoints take `Authorization: Bearer <staff token>`."""
    secret = settings_of(request).signing_secret.get_secret_value()
    token = (authorization or "").removeprefix("Bearer ").strip()
    staff_id = staff_of_token(secret, token) if token else None
    if staff_id is None:
        raise ProblemError(401, "staff_token_required", "a valid staff bearer token is required")
    return staff_id


Repo = Annotated[NotifyRepository, Depends(repo)]
Staff = Annotated[str, Depends(staff)]


@router.post(
    "/channels/{channel}/inbound",
    status_code=202,
    summary="A customer message from a chat gateway (signed like our outbound webhooks)",
    responses={400: {}, 401: {}, 409: {}, 422: {}},
)
async def inbound(channel: Channel, request: Request, db: Repo) -> Accepted:
    settings = settings_of(request)
    body = await request.body()
    now = clock_of(request).now()
    try:
        signature = verify(
            settings.signing_secret.get_secret_value(),
            request.headers.get(SIGNATURE_HEADER),
            body,
            now=now.timestamp(),
            max_skew_s=settings.inbound_max_skew_s,
        )
    except SignatureError as exc:
        raise ProblemError(401, exc.code, str(exc)) from None
    message = _parse_inbound(body)
    resources: Resources = request.app.state.resources
    assert resources.redis is not None
    fresh = await resources.redis.set(
        f"{settings.redis_prefix}inbound-sig:{signature}",
        "1",
        nx=True,
        ex=2 * settings.inbound_max_skew_s,
    )
    if not fresh:
        raise ProblemError(409, "replayed_request", "this signed request was already received")
    locale = message.locale
    if locale is None:
        store = await db.store_doc(message.store_id)
        locale = (store or {}).get("locale") or "en"
    event = MessageReceived(
        conversation_id=message.conversation_id or f"{channel}:{message.customer_ref}",
        channel=channel,
        message_id=message.message_id,
        customer_ref=message.customer_ref,
        store_id=message.store_id,
        locale=locale,
        text=message.text,
        received_at=now,
    )
    envelope = new_envelope(
        event,
        region=settings.region,
        store_id=message.store_id,
        correlation_id=f"{channel}:{message.message_id}",
        occurred_at=now,
        event_id=deterministic_event_id("inbound", str(channel), message.message_id),
    )
    await resources.publisher.publish(envelope)
    return Accepted(
        status="accepted", message_id=message.message_id, event_id=str(envelope.event_id)
    )


def _parse_inbound(body: bytes) -> InboundMessage:
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ProblemError(400, "malformed_json", "the request body is not valid JSON") from None
    try:
        return InboundMessage.model_validate(raw)
    except ValidationError as exc:
        errors = [{"loc": [str(p) for p in e["loc"]], "msg": e["msg"]} for e in exc.errors()]
        raise ProblemError(
            422, "invalid_request", "the message does not match the schema", errors=errors
        ) from None


@router.get("/routing-rules", summary="Keyword rules routing inbound messages to staff roles")
async def list_rules(db: Repo) -> list[Rule]:
    rules = sorted(await db.routing_rules(), key=lambda r: (r.locale, r.priority, r.rule_id))
    return [
        Rule(
            rule_id=r.rule_id,
            locale=r.locale,
            keywords=list(r.keywords),
            role=r.role,
            priority=r.priority,
        )
        for r in rules
    ]


@router.put("/routing-rules/{rule_id}", summary="Create or replace a routing rule (staff)")
async def put_rule(rule_id: Id, body: RuleBody, db: Repo, _: Staff) -> Rule:
    await db.put_rule(
        RoutingRule(rule_id, body.locale, tuple(body.keywords), body.role, body.priority)
    )
    return Rule(rule_id=rule_id, **body.model_dump())


@router.delete("/routing-rules/{rule_id}", status_code=204, summary="Delete a rule (staff)")
async def delete_rule(rule_id: Id, db: Repo, _: Staff) -> None:
    if not await db.delete_rule(rule_id):
        raise ProblemError(404, "unknown_rule", f"no routing rule {rule_id!r}")


def _masked(doc: dict[str, Any] | None) -> dict[str, Any]:
    doc = dict(doc or {})
    doc.pop("_id", None)
    channels = {
        k: {**v, "secret": "***" if v.get("secret") else None}
        for k, v in (doc.get("channels") or {}).items()
    }
    if channels:
        doc["channels"] = channels
    return doc


def _config_fields(body: ChainConfig) -> dict[str, Any]:
    fields = body.model_dump(exclude_none=True, exclude={"channels"})
    if body.channels is not None:
        fields["channels"] = {k: v.checked() for k, v in body.channels.items()}
    return fields


@router.put(
    "/stores/{store_id}/notify-config",
    summary="A store's chain, locale, reminders and channel adapters (staff)",
)
async def put_store_config(store_id: Id, body: StoreConfig, db: Repo, _: Staff) -> dict[str, Any]:
    if body.timezone is not None:
        try:
            ZoneInfo(body.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ProblemError(
                422, "unknown_timezone", f"unknown time zone {body.timezone!r}"
            ) from None
    return _masked(await db.upsert_store(store_id, **_config_fields(body)))


@router.get("/stores/{store_id}/notify-config", summary="A store's notify configuration")
async def get_store_config(store_id: Id, db: Repo) -> dict[str, Any]:
    doc = await db.store_doc(store_id)
    if doc is None:
        raise ProblemError(404, "unknown_store", f"notify knows no store {store_id!r}")
    return _masked(doc)


@router.put(
    "/chains/{chain_id}/notify-config", summary="Chain-wide reminders and channel adapters (staff)"
)
async def put_chain_config(chain_id: Id, body: ChainConfig, db: Repo, _: Staff) -> dict[str, Any]:
    return _masked(await db.upsert_chain(chain_id, **_config_fields(body)))


@router.get("/chains/{chain_id}/notify-config", summary="A chain's notify configuration")
async def get_chain_config(chain_id: Id, db: Repo) -> dict[str, Any]:
    doc = await db.chain_doc(chain_id)
    if doc is None:
        raise ProblemError(404, "unknown_chain", f"notify knows no chain {chain_id!r}")
    return _masked(doc)


@router.get("/notifications/{notification_id}", summary="Delivery state of a notification")
async def notification(notification_id: Id, db: Repo) -> dict[str, Any]:
    doc = await db.get(notification_id)
    if doc is None:
        raise ProblemError(404, "unknown_notification", f"no notification {notification_id!r}")
    keep = (
        "kind",
        "channel",
        "store_id",
        "booking_id",
        "state",
        "attempts",
        "due_at",
        "sent_at",
        "last_error",
        "locale",
    )
    return {"notification_id": doc["_id"], **{k: doc.get(k) for k in keep}}
