"""Waitlist and offers: join, look, leave; accept or decline an offer. Every change is a
command decided by the availability processor (which also makes and expires the offers);
reads come from the MongoDB projection of `booking.events.v1`."""

from __future__ import annotations

import uuid
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query, Response

from optisync_common.http import LocalDayQuery
from optisync_common.problems import ProblemError
from schemas.envelope import Envelope
from schemas.events.base import EventPayload, RejectionReason
from schemas.events.booking import (
    AcceptOffer,
    CommandFailed,
    Customer,
    DeclineOffer,
    JoinWaitlist,
    LeaveWaitlist,
)
from services.booking.adapters.bookings import Document, wait_for_document
from services.booking.adapters.replies import Outcome, Render
from services.booking.adapters.waitlist_docs import entry_doc
from services.booking.api.commands import (
    FAILURES,
    REQUEST_DECISIONS,
    CommandGateway,
    LateRender,
    after_reading,
    late_renderer,
)
from services.booking.api.deps import (
    ACCEPTED_RESPONSE,
    BookingContext,
    ClockDep,
    ContextDep,
    IdempotencyKeyHeader,
    problems,
    require_idempotency_key,
    store_catalog,
)
from services.booking.api.models import (
    Booking,
    Offer,
    OfferRequest,
    StoreWaitlist,
    WaitlistEntry,
    WaitlistRequest,
)
from services.booking.api.presenters import (
    entry_from_doc,
    offer_from_doc,
    rejection_outcome,
)
from services.booking.api.validation import exam_type_of

router = APIRouter(tags=["waitlist"])

EntryId = Annotated[str, Path(min_length=1, max_length=128)]
Token = Annotated[str, Path(min_length=1, max_length=128)]


def _failure(event: EventPayload, timezone: str | None) -> Outcome:
    assert isinstance(event, CommandFailed)
    return rejection_outcome(event.reason, event.detail, timezone)


def _done_before(event: EventPayload) -> bool:
    """A retry of a change this idempotency key already made: answered as the first time."""
    return isinstance(event, CommandFailed) and event.decided_event_id is not None


def _joined_renderer(gateway: CommandGateway, timezone: str | None) -> Render:
    async def render(envelope: Envelope[EventPayload]) -> Outcome:
        event = envelope.payload
        if isinstance(event, CommandFailed) and event.waitlist_entry_id is not None:
            return await _joined_before(gateway, event.waitlist_entry_id, timezone)
        if envelope.type in FAILURES:
            return _failure(event, timezone)
        return Outcome(201, entry_from_doc(entry_doc(envelope)).model_dump_json().encode())

    return render


async def _joined_before(gateway: CommandGateway, entry_id: str, timezone: str | None) -> Outcome:
    """A retried join: the entry its key made, as it is now (the projector may be a moment
    behind the decision)."""
    doc = await wait_for_document(
        gateway.repo.waitlist.entry, entry_id, gateway.settings.decision_timeout_s
    )
    if doc is None:
        detail = "already joined with this idempotency key; the entry is not readable yet"
        return rejection_outcome(
            RejectionReason.DUPLICATE, detail, timezone, waitlist_entry_id=entry_id
        )
    return Outcome(201, entry_from_doc(doc).model_dump_json().encode())


def _left_renderer(entry: Document) -> Render:
    left = entry_from_doc({**entry, "status": "left"}).model_dump_json().encode()

    async def render(envelope: Envelope[EventPayload]) -> Outcome:
        if envelope.type in FAILURES and not _done_before(envelope.payload):
            return _failure(envelope.payload, None)
        return Outcome(200, left)

    return render


def _declined_renderer(offer: Document) -> Render:
    declined = offer_from_doc({**offer, "state": "declined"}).model_dump_json().encode()

    async def render(envelope: Envelope[EventPayload]) -> Outcome:
        if envelope.type in FAILURES and not _done_before(envelope.payload):
            return _failure(envelope.payload, None)
        return Outcome(200, declined)

    return render


# How a status read renders these commands' decisions when no process waits for them.
@late_renderer("waitlist_join")
def _late_join(gateway: CommandGateway, late: LateRender) -> Render:
    return _joined_renderer(gateway, late.timezone)


@late_renderer("waitlist_leave")
def _late_leave(gateway: CommandGateway, late: LateRender) -> Render:
    missing = Outcome.problem(
        404, "unknown_waitlist_entry", f"no waitlist entry {late.subject_id!r}"
    )
    wait = gateway.settings.projection_wait_s
    return after_reading(
        gateway.repo.waitlist.entry, late.subject_id, wait, missing, _left_renderer
    )


@late_renderer("offer_decline")
def _late_decline(gateway: CommandGateway, late: LateRender) -> Render:
    missing = Outcome.problem(404, "unknown_offer", "no such offer for this customer")
    wait = gateway.settings.projection_wait_s
    return after_reading(
        gateway.repo.waitlist.offer, late.subject_id, wait, missing, _declined_renderer
    )


@router.post(
    "/v1/waitlist",
    status_code=201,
    response_model=WaitlistEntry,
    responses={**ACCEPTED_RESPONSE, **problems(400, 404, 409, 413, 415, 422, 503)},
    summary="Join a store's waitlist for an exam type, days and (optionally) a time window",
    description="When a matching slot frees up the customer gets an offer (SlotOffered) on "
    "their channel and can accept it while it is held for them.",
)
async def join_waitlist(
    body: WaitlistRequest,
    context: ContextDep,
    clock: ClockDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    key = require_idempotency_key(idempotency_key)
    catalog = await store_catalog(context, body.store_id)
    exam_type_of(catalog, body.exam_type)
    assert catalog.timezone is not None
    now = clock.now()
    if body.date_to < now.astimezone(ZoneInfo(catalog.timezone)).date():
        raise ProblemError(422, "in_past", "the requested days have passed")
    command = JoinWaitlist(
        idempotency_key=key,
        waitlist_entry_id=uuid.uuid4().hex,
        **body.model_dump(exclude={"store_id", "customer"}),
        customer=body.customer,
    )
    return await context.gateway.submit(
        command,
        store_id=body.store_id,
        accepts=FAILURES | {"WaitlistJoined"},
        render=_joined_renderer(context.gateway, catalog.timezone),
        occurred_at=now,
        late=LateRender("waitlist_join", timezone=catalog.timezone),
    )


async def _entry(context: BookingContext, entry_id: str) -> Document:
    wait = context.gateway.settings.projection_wait_s
    doc = await wait_for_document(context.repo.waitlist.entry, entry_id, wait)
    if doc is None:
        raise ProblemError(404, "unknown_waitlist_entry", f"no waitlist entry {entry_id!r}")
    return doc


async def _offer(context: BookingContext, token: str, customer_ref: str | None) -> Document:
    wait = context.gateway.settings.projection_wait_s
    doc = await wait_for_document(context.repo.waitlist.offer, token, wait)
    # Someone else's token answers like an unknown one: it must not reveal offers.
    if doc is None or customer_ref not in (None, doc["customer_ref"]):
        raise ProblemError(404, "unknown_offer", "no such offer for this customer")
    return doc


@router.get(
    "/v1/waitlist/{entry_id}",
    response_model=WaitlistEntry,
    responses=problems(404, 422, 503),
    summary="One waitlist entry with its offers",
)
async def get_entry(entry_id: EntryId, context: ContextDep) -> WaitlistEntry:
    return entry_from_doc(await _entry(context, entry_id))


@router.delete(
    "/v1/waitlist/{entry_id}",
    response_model=WaitlistEntry,
    responses={**ACCEPTED_RESPONSE, **problems(404, 409, 422, 503)},
    summary="Leave the waitlist (live offers are given up and go to the next customers)",
)
async def leave_waitlist(
    entry_id: EntryId,
    context: ContextDep,
    clock: ClockDep,
    customer_ref: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    doc = await _entry(context, entry_id)
    if customer_ref not in (None, doc["customer_ref"]):
        raise ProblemError(404, "unknown_waitlist_entry", f"no waitlist entry {entry_id!r}")
    command = LeaveWaitlist(
        idempotency_key=idempotency_key or f"leave:{entry_id}",
        waitlist_entry_id=entry_id,
        customer_ref=doc["customer_ref"],
    )
    return await context.gateway.submit(
        command,
        store_id=doc["store_id"],
        accepts=FAILURES | {"WaitlistLeft"},
        render=_left_renderer(doc),
        occurred_at=clock.now(),
        late=LateRender("waitlist_leave", subject_id=entry_id),
    )


@router.get(
    "/v1/stores/{store_id}/waitlist",
    response_model=StoreWaitlist,
    responses=problems(404, 422, 503),
    summary="Staff view: the store's waitlist entries covering a day, with their offers",
)
async def store_waitlist(
    store_id: Annotated[str, Path(min_length=1, max_length=128)],
    date: LocalDayQuery,
    context: ContextDep,
) -> StoreWaitlist:
    await store_catalog(context, store_id)  # 404 for an unknown store
    docs = await context.repo.waitlist.for_store_day(store_id, date)
    return StoreWaitlist(store_id=store_id, date=date, entries=[entry_from_doc(d) for d in docs])


@router.get(
    "/v1/offers/{token}",
    response_model=Offer,
    responses=problems(404, 422, 503),
    summary="One offer (what the accept link shows)",
)
async def get_offer(token: Token, context: ContextDep) -> Offer:
    return offer_from_doc(await _offer(context, token, None))


@router.post(
    "/v1/offers/{token}/accept",
    status_code=201,
    response_model=Booking,
    responses={**ACCEPTED_RESPONSE, **problems(404, 409, 413, 415, 422, 503)},
    summary="Accept an offer: the first accept of a slot's offers gets the booking",
    description="201 with the booking; 409 `offer_taken` when another customer accepted "
    "first, `offer_expired` after the hold; a repeated accept returns the same booking.",
)
async def accept_offer(
    token: Token,
    context: ContextDep,
    clock: ClockDep,
    body: OfferRequest | None = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    offer = await _offer(context, token, body.customer_ref if body else None)
    entry = await context.repo.waitlist.entry(offer["waitlist_entry_id"])
    contact = (entry or {}).get("customer") or {}
    catalog = await store_catalog(context, offer["store_id"])
    # Without a key, one per offer: clicking the link twice is one accept.
    key = idempotency_key or f"accept:{token}"
    booking_id = uuid.uuid4().hex
    command = AcceptOffer(
        idempotency_key=key,
        offer_token=token,
        customer_ref=offer["customer_ref"],
        booking_id=booking_id,
        customer=Customer(
            customer_ref=offer["customer_ref"],
            **{k: v for k, v in contact.items() if v is not None},
        ),
    )
    return await context.gateway.submit(
        command,
        store_id=offer["store_id"],
        accepts=REQUEST_DECISIONS,
        render=context.gateway.request_renderer(key, catalog.timezone),
        occurred_at=clock.now(),
        booking_id=booking_id,
        late=LateRender("request", key, catalog.timezone),
    )


@router.post(
    "/v1/offers/{token}/decline",
    response_model=Offer,
    responses={**ACCEPTED_RESPONSE, **problems(404, 409, 422, 503)},
    summary="Decline an offer: the slot goes to the next customer on the waitlist",
)
async def decline_offer(
    token: Token,
    context: ContextDep,
    clock: ClockDep,
    body: OfferRequest | None = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    offer = await _offer(context, token, body.customer_ref if body else None)
    command = DeclineOffer(
        idempotency_key=idempotency_key or f"decline:{token}",
        offer_token=token,
        customer_ref=offer["customer_ref"],
    )
    return await context.gateway.submit(
        command,
        store_id=offer["store_id"],
        accepts=FAILURES | {"OfferDeclined"},
        render=_declined_renderer(offer),
        occurred_at=clock.now(),
        late=LateRender("offer_decline", subject_id=token),
    )
