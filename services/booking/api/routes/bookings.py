"""Bookings: create, read, and every change of a booking's life, each decided by the processor."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Response

from optisync_common.problems import ProblemError
from schemas.events.booking import (
    BookingCommand,
    CancelBooking,
    CheckInBooking,
    CompleteBooking,
    MarkNoShow,
    PostExamResult,
    RequestBooking,
    RescheduleBooking,
)
from services.booking.adapters.bookings import Document
from services.booking.adapters.processor_retention import retention_cutoff
from services.booking.api.commands import (
    FAILURES,
    REQUEST_DECISIONS,
    CommandGateway,
    LateRender,
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
    BookingRequest,
    CancelRequest,
    CompleteRequest,
    RescheduleRequest,
    ResultSummaryRequest,
    StaffActionRequest,
)
from services.booking.api.presenters import booking_from_doc, booking_outcome
from services.booking.api.validation import check_slot, exam_type_of

router = APIRouter(prefix="/v1/bookings", tags=["bookings"])

BookingId = Annotated[str, Path(min_length=1, max_length=128)]

_CREATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": Booking, "description": "the same customer already holds this slot"},
    **ACCEPTED_RESPONSE,
    **problems(400, 404, 409, 413, 415, 422, 503),
}
_CHANGE_RESPONSES = {**ACCEPTED_RESPONSE, **problems(400, 404, 409, 413, 415, 422, 503)}


@router.post(
    "",
    status_code=201,
    response_model=Booking,
    responses=_CREATE_RESPONSES,
    summary="Book an exam slot",
    description="201 with the booking (also for a retry with the same idempotency key), 200 "
    "when the customer already holds the slot, 409 with alternatives when it is taken.",
)
async def create_booking(
    body: BookingRequest,
    context: ContextDep,
    clock: ClockDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    try:
        booking = await prepare_booking(context, body, idempotency_key, clock.now())
    except ProblemError as refused:
        made = await _made_before(context, body, idempotency_key, refused)
        if made is None:
            raise
        return booking_outcome(made, 201).response()
    return await booking.submit(context.gateway)


# Early refusals a retry can meet although its first try was booked: the slot has started
# since, or the store's hours or menu changed.
_SINCE_CHANGED = frozenset({"in_past", "outside_opening_hours", "not_on_grid", "unknown_exam_type"})


async def _made_before(
    context: BookingContext, body: BookingRequest, key: str | None, refused: ProblemError
) -> Document | None:
    """For a retry refused early: the booking its key already made for the same request
    (then the answer is that booking, as the processor would give it), else None."""
    key = _channel_key(body) if key is None else key
    if refused.code not in _SINCE_CHANGED or key is None:
        return None
    doc = await context.repo.by_idempotency_key(body.store_id, key)
    same_request = doc is not None and (
        doc["customer_ref"],
        doc["exam_type"],
        doc["slot_start"],
    ) == (body.customer.customer_ref, body.exam_type, body.slot_start)
    return doc if same_request else None


def _channel_key(body: BookingRequest) -> str | None:
    """The idempotency key of a request without the header: its channel message id."""
    if body.channel_message_id is None:
        return None
    return f"{body.channel.value}:{body.channel_message_id}"


@dataclass(frozen=True)
class PreparedBooking:
    """A booking request that passed every check the API makes before producing it."""

    command: RequestBooking
    store_id: str
    timezone: str | None
    occurred_at: dt.datetime

    async def submit(self, gateway: CommandGateway) -> Response:
        return await gateway.submit(
            self.command,
            store_id=self.store_id,
            accepts=REQUEST_DECISIONS,
            render=gateway.request_renderer(self.command.idempotency_key, self.timezone),
            occurred_at=self.occurred_at,
            booking_id=self.command.booking_id,
            late=LateRender("request", self.command.idempotency_key, self.timezone),
        )


async def prepare_booking(
    context: BookingContext, body: BookingRequest, idempotency_key: str | None, now: dt.datetime
) -> PreparedBooking:
    """The command for `body`, or a ProblemError (4xx) saying why not. Produces nothing, so
    the fast path (`api/fast_bookings.py`) may hand a request it fails on to this route."""
    key = require_idempotency_key(
        _channel_key(body) if idempotency_key is None else idempotency_key
    )
    catalog = await store_catalog(context, body.store_id)
    exam = exam_type_of(catalog, body.exam_type)
    start = check_slot(catalog, exam, body.slot_start, now)
    command = RequestBooking(
        idempotency_key=key,
        booking_id=uuid.uuid4().hex,
        channel=body.channel,
        customer=body.customer,
        exam_type=body.exam_type,
        slot_start=start,
        optometrist_id=body.optometrist_id,
        requested_at=now,
    )
    return PreparedBooking(command, body.store_id, catalog.timezone, now)


@router.get(
    "/{booking_id}",
    response_model=Booking,
    responses=problems(404, 422, 503),
    summary="One booking with its history",
)
async def get_booking(booking_id: BookingId, context: ContextDep) -> Booking:
    doc = await context.repo.get(booking_id)
    if doc is None:
        raise ProblemError(404, "unknown_booking", f"no booking {booking_id!r}")
    return booking_from_doc(doc)


async def _find(context: BookingContext, booking_id: str) -> Document:
    doc = await context.repo.wait_for(booking_id, context.gateway.settings.projection_wait_s)
    if doc is None:
        raise ProblemError(404, "unknown_booking", f"no booking {booking_id!r}")
    return doc


def _already_there(doc: Document, start: dt.datetime, optometrist_id: str | None) -> bool:
    same_optometrist = optometrist_id in (None, doc["optometrist_id"])
    return doc["status"] == "confirmed" and doc["slot_start"] == start and same_optometrist


def _check_retained(doc: Document, retain_days: int, now: dt.datetime) -> None:
    """The processor forgets a booking once its day is past the retention
    (`processor_retention`): say why it can no longer change, rather than pass on its
    `unknown_booking` for a booking this API still shows."""
    local_date = doc["slot_start"].astimezone(ZoneInfo(doc["timezone"])).date()
    if local_date < retention_cutoff(now, retain_days):
        raise ProblemError(
            409,
            "invalid_transition",
            f"booking {doc['_id']!r} was more than {retain_days} days ago: it can no longer change",
        )


async def _submit_change(
    context: BookingContext, clock: ClockDep, doc: Document, command: BookingCommand, success: str
) -> Response:
    _check_retained(doc, context.gateway.settings.processor_retain_days, clock.now())
    return await context.gateway.submit(
        command,
        store_id=doc["store_id"],
        accepts=FAILURES | {success},
        render=context.gateway.change_renderer(doc),
        occurred_at=clock.now(),
        booking_id=doc["_id"],
        late=LateRender("change", subject_id=doc["_id"]),
    )


@router.post(
    "/{booking_id}/cancel",
    response_model=Booking,
    responses=_CHANGE_RESPONSES,
    summary="Cancel a booking (by the customer or the store)",
)
async def cancel_booking(
    booking_id: BookingId,
    body: CancelRequest,
    context: ContextDep,
    clock: ClockDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    key = require_idempotency_key(idempotency_key)
    doc = await _find(context, booking_id)
    command = CancelBooking(
        idempotency_key=key, booking_id=booking_id, by=body.by, reason=body.reason
    )
    return await _submit_change(context, clock, doc, command, "BookingCancelled")


@router.post(
    "/{booking_id}/reschedule",
    response_model=Booking,
    responses=_CHANGE_RESPONSES,
    summary="Move a booking to another slot: the new slot is taken and the old one freed in "
    "one decision, or nothing changes",
)
async def reschedule_booking(
    booking_id: BookingId,
    body: RescheduleRequest,
    context: ContextDep,
    clock: ClockDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    key = require_idempotency_key(idempotency_key)
    doc = await _find(context, booking_id)
    catalog = await store_catalog(context, doc["store_id"])
    exam = exam_type_of(catalog, doc["exam_type"])
    start = check_slot(catalog, exam, body.slot_start, clock.now())
    if _already_there(doc, start, body.optometrist_id):
        # Nothing to move: no event, so no "moved" message and no reschedule counted.
        return booking_outcome(doc, 200).response()
    command = RescheduleBooking(
        idempotency_key=key,
        booking_id=booking_id,
        new_slot_start=start,
        optometrist_id=body.optometrist_id,
    )
    return await _submit_change(context, clock, doc, command, "BookingRescheduled")


@router.post(
    "/{booking_id}/check-in",
    response_model=Booking,
    responses=_CHANGE_RESPONSES,
    summary="The customer arrived",
)
async def check_in_booking(
    booking_id: BookingId,
    context: ContextDep,
    clock: ClockDep,
    body: StaffActionRequest | None = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    key = require_idempotency_key(idempotency_key)
    doc = await _find(context, booking_id)
    command = CheckInBooking(
        idempotency_key=key, booking_id=booking_id, staff_id=body.staff_id if body else None
    )
    return await _submit_change(context, clock, doc, command, "BookingCheckedIn")


@router.post(
    "/{booking_id}/no-show",
    response_model=Booking,
    responses=_CHANGE_RESPONSES,
    summary="The customer did not come",
)
async def no_show_booking(
    booking_id: BookingId,
    context: ContextDep,
    clock: ClockDep,
    body: StaffActionRequest | None = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    key = require_idempotency_key(idempotency_key)
    doc = await _find(context, booking_id)
    command = MarkNoShow(
        idempotency_key=key, booking_id=booking_id, staff_id=body.staff_id if body else None
    )
    return await _submit_change(context, clock, doc, command, "BookingNoShow")


@router.post(
    "/{booking_id}/complete",
    response_model=Booking,
    responses=_CHANGE_RESPONSES,
    summary="The exam took place",
)
async def complete_booking(
    booking_id: BookingId,
    context: ContextDep,
    clock: ClockDep,
    body: CompleteRequest | None = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    key = require_idempotency_key(idempotency_key)
    doc = await _find(context, booking_id)
    command = CompleteBooking(
        idempotency_key=key,
        booking_id=booking_id,
        optometrist_id=body.optometrist_id if body else None,
    )
    return await _submit_change(context, clock, doc, command, "BookingCompleted")


@router.post(
    "/{booking_id}/summary",
    response_model=Booking,
    responses=_CHANGE_RESPONSES,
    summary="The optometrist's short result summary of a completed exam (notify sends it on)",
)
async def post_result_summary(
    booking_id: BookingId,
    body: ResultSummaryRequest,
    context: ContextDep,
    clock: ClockDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    key = require_idempotency_key(idempotency_key)
    doc = await _find(context, booking_id)
    command = PostExamResult(
        idempotency_key=key,
        booking_id=booking_id,
        optometrist_id=body.optometrist_id,
        summary=body.summary,
    )
    return await _submit_change(context, clock, doc, command, "ExamResultPosted")
