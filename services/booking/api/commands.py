"""Send a command to the processor and answer with its decision (DESIGN.md §3 steps 1-3).

The decision is awaited for `decision_timeout_s`, counted from before the command is produced
(that is what the caller waits). Past the deadline the caller gets 202 and a status URL; the
reply waiter still records the decision when it comes, and when no process waits for it any
more, a status read finds it in the topic (`adapters/late_decisions.py`), even after a Redis loss
(the lookup is kept in MongoDB too).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import Response

from optisync_common.kafka import EventPublisher
from optisync_common.logging import get_logger
from optisync_common.problems import ProblemError
from optisync_common.resources import NotReady, Resources
from schemas.envelope import Envelope, new_envelope
from schemas.events.base import EventPayload, RejectionReason
from schemas.events.booking import (
    BookingCommand,
    BookingConfirmed,
    BookingRejected,
    CommandFailed,
)
from services.booking.adapters.bookings import (
    BookingRepository,
    Document,
    apply_change,
    confirmed_doc,
    wait_for_document,
)
from services.booking.adapters.late_decisions import LATE_LOOKUPS, KeptLookups, LateDecisions
from services.booking.adapters.replies import (
    PENDING,
    PRODUCE_HOP,
    LateLookup,
    Outcome,
    Render,
    ReplyWaiter,
)
from services.booking.api.models import Accepted
from services.booking.api.presenters import booking_outcome, rejection_outcome
from services.booking.settings import BookingSettings

log = get_logger(__name__)

FAILURES = frozenset({"BookingRejected", "CommandFailed"})
# A produce that failed may still have reached the broker (a timeout, a leader moving), so
# the answer says how to find out: the key makes sending it again safe.
NOT_SENT = (
    "the command could not be confirmed as sent: send it again with the same "
    "Idempotency-Key (if it did arrive, that returns its decision)"
)
LATE_LOOKUP_LIMIT_S = 10.0  # the longest a status read spends looking for a late decision
REQUEST_DECISIONS = FAILURES | {"BookingConfirmed"}


async def _timed_publish(publisher: EventPublisher, envelope: Envelope[Any]) -> None:
    started = time.perf_counter()
    await publisher.publish(envelope)
    PRODUCE_HOP.observe(time.perf_counter() - started)


@dataclass(frozen=True, slots=True)
class LateRender:
    """How a status read answers a decision it finds after the waiting process is gone: `kind`
    names a renderer registered with `late_renderer` (a booking request and a booking change
    here, the waitlist's in routes/waitlist.py); `subject_id` is the booking, waitlist entry
    or offer the command is about."""

    kind: str
    idempotency_key: str | None = None
    timezone: str | None = None
    subject_id: str | None = None

    @classmethod
    def of(cls, raw: dict[str, str | None]) -> LateRender:
        kind = raw.get("kind")
        if kind not in _LATE_RENDERERS:
            raise ValueError(f"no late renderer {kind!r}")
        return cls(kind, raw.get("idempotency_key"), raw.get("timezone"), raw.get("subject_id"))


LateRenderer = Callable[["CommandGateway", LateRender], Render]
_LATE_RENDERERS: dict[str, LateRenderer] = {}


def late_renderer(kind: str) -> Callable[[LateRenderer], LateRenderer]:
    """Register how to render the decisions of commands submitted with `LateRender(kind)`."""

    def register(factory: LateRenderer) -> LateRenderer:
        _LATE_RENDERERS[kind] = factory
        return factory

    return register


def after_reading(
    find: Callable[[str], Awaitable[Document | None]],
    subject_id: str | None,
    within_s: float,
    missing: Outcome,
    render_with: Callable[[Document], Render],
) -> Render:
    """A late renderer of a change: the subject as it is now (the change itself is in it once
    projected; rendering applies it again, a no-op), or `missing`."""

    async def render(envelope: Envelope[EventPayload]) -> Outcome:
        doc = None if subject_id is None else await wait_for_document(find, subject_id, within_s)
        return missing if doc is None else await render_with(doc)(envelope)

    return render


class CommandGateway:
    def __init__(
        self,
        settings: BookingSettings,
        resources: Resources,
        waiter: ReplyWaiter,
        repo: BookingRepository,
    ) -> None:
        self.settings = settings
        self.resources = resources
        self.waiter = waiter
        self.repo = repo
        self._sends: set[asyncio.Task[Any]] = set()
        self.late = LateDecisions(settings, waiter.outcomes)
        self.kept = KeptLookups(resources.db, settings.idempotency_ttl_s)

    async def submit(
        self,
        command: BookingCommand,
        *,
        store_id: str,
        accepts: frozenset[str],
        render: Render,
        occurred_at: dt.datetime,
        late: LateRender,
        booking_id: str | None = None,
    ) -> Response:
        """`render` turns the decision into the answer; `late` says how a status read renders
        it when no process waits for it any more (see `late_renderer`)."""
        timeout = self.settings.decision_timeout_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        correlation_id = uuid.uuid4().hex
        envelope = new_envelope(
            command,
            region=self.settings.region,
            store_id=store_id,
            correlation_id=correlation_id,
            occurred_at=occurred_at,
        )
        try:
            publisher = self.resources.publisher
            pending = self.waiter.expect(
                correlation_id, str(envelope.event_id), accepts, render, timeout
            )
        except NotReady as exc:
            raise ProblemError(503, "unavailable", f"cannot take commands now: {exc}") from exc
        sent_ms = int(time.time() * 1000)  # as Kafka timestamps are: where a late lookup starts
        send = asyncio.create_task(_timed_publish(publisher, envelope))
        self._sends.add(send)
        send.add_done_callback(lambda task: self._sent(task, correlation_id))
        try:
            await asyncio.wait_for(asyncio.shield(send), timeout)
            outcome = await asyncio.wait_for(
                asyncio.shield(pending.future), max(deadline - loop.time(), 0.0)
            )
        except TimeoutError:
            if pending.future.done():  # decided just as the deadline passed
                return pending.future.result().response()
            pending.handed_off = True  # no await before this: the outcome cannot slip by
            event_id = str(envelope.event_id)
            lookup = LateLookup(store_id, event_id, tuple(accepts), sent_ms, asdict(late))
            return await self._accepted(correlation_id, booking_id, lookup)
        except Exception as exc:  # the broker refused the command (or its answer was lost)
            self.waiter.forget(correlation_id)
            raise ProblemError(503, "unavailable", NOT_SENT) from exc
        return outcome.response()

    def _sent(self, task: asyncio.Task[Any], correlation_id: str) -> None:
        self._sends.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        # Late failure after a 202: record it so the status URL does not stay pending.
        log.error("command_not_sent", correlation_id=correlation_id, error=repr(task.exception()))
        self.waiter.fail(correlation_id, Outcome.problem(503, "unavailable", NOT_SENT))

    async def _accepted(
        self, correlation_id: str, booking_id: str | None, lookup: LateLookup
    ) -> Response:
        status_url = f"/v1/commands/{correlation_id}"
        marked = await asyncio.gather(
            self.waiter.outcomes.mark_pending(correlation_id, lookup),
            self.kept.keep(correlation_id, lookup),  # outlives a Redis loss
            return_exceptions=True,
        )
        for store, failure in zip(("redis", "mongodb"), marked, strict=True):
            if isinstance(failure, Exception):  # the decision is still stored when it comes
                log.warning("pending_not_marked", correlation_id=correlation_id, store=store,
                            error=repr(failure))  # fmt: skip
        body = Accepted(correlation_id=correlation_id, status_url=status_url, booking_id=booking_id)
        return Response(body.model_dump_json(), 202, {"location": status_url}, "application/json")

    async def status(self, correlation_id: str) -> bytes | None:
        """What `GET /v1/commands/{id}` shows: the stored outcome, else "pending" (looking for
        the decision in the topic when it is overdue and this process does not wait for it);
        None for an unknown command."""
        stored = await self.waiter.outcomes.get(correlation_id)
        if stored is None:
            stored = await self._pending_again(correlation_id)
            if stored is None:
                return None
        lookup = LateLookup.of_pending(stored)
        if lookup is None:
            return stored if not stored.startswith(PENDING[:-1]) else PENDING
        overdue_ms = (self.settings.decision_timeout_s + self.settings.late_decision_after_s) * 1000
        if (
            time.time() * 1000 - lookup.sent_ms < overdue_ms
            or self.waiter.awaits(correlation_id)
            or not await self.waiter.outcomes.claim_lookup(
                correlation_id, self.settings.late_decision_every_s
            )
        ):
            return PENDING
        try:
            async with asyncio.timeout(LATE_LOOKUP_LIMIT_S):  # a broker that does not answer
                outcome = await self.late.find(
                    correlation_id, lookup, self.late_renderer(LateRender.of(lookup.render))
                )
        except Exception as exc:  # Kafka away: the next read tries again
            LATE_LOOKUPS.labels("failed").inc()
            log.warning(
                "late_decision_lookup_failed", correlation_id=correlation_id, error=repr(exc)
            )
            return PENDING
        return PENDING if outcome is None else outcome.stored()

    async def _pending_again(self, correlation_id: str) -> bytes | None:
        """After a Redis loss: the command's pending status again, from the lookup kept in
        MongoDB (then looked up as any overdue one); None for a command never answered 202."""
        try:
            kept = await self.kept.get(correlation_id)
        except Exception as exc:
            log.warning("kept_lookup_not_read", correlation_id=correlation_id, error=repr(exc))
            raise ProblemError(503, "unavailable", "command status cannot be read now") from exc
        if kept is None:
            return None
        lookup, left_s = kept
        await self.waiter.outcomes.mark_pending(correlation_id, lookup, ttl_s=left_s)
        log.info("command_status_restored", correlation_id=correlation_id)
        return lookup.pending_json()

    # ---- renderers: the decision -> the HTTP outcome ------------------------------------

    def late_renderer(self, late: LateRender) -> Render:
        return _LATE_RENDERERS[late.kind](self, late)

    def request_renderer(self, idempotency_key: str, timezone: str | None) -> Render:
        async def render(envelope: Envelope[EventPayload]) -> Outcome:
            event = envelope.payload
            if isinstance(event, BookingConfirmed):
                return booking_outcome(confirmed_doc(envelope), 201)
            if isinstance(event, BookingRejected):
                if event.reason is RejectionReason.DUPLICATE and event.existing_booking_id:
                    return await self._existing(event, idempotency_key, timezone)
                return rejection_outcome(event.reason, event.detail, timezone, event.alternatives)
            assert isinstance(event, CommandFailed)
            return rejection_outcome(event.reason, event.detail, timezone)

        return render

    async def _existing(
        self, event: BookingRejected, idempotency_key: str, timezone: str | None
    ) -> Outcome:
        """The booking a repeated request resolves to: 201 for a retry with the same key,
        200 for the same customer and slot asked again (e.g. from another channel)."""
        assert event.existing_booking_id is not None
        doc = await self.repo.wait_for(event.existing_booking_id, self.settings.decision_timeout_s)
        if doc is None:
            return rejection_outcome(
                RejectionReason.DUPLICATE,
                "this request was already decided; the booking is not readable yet",
                timezone,
                existing_booking_id=event.existing_booking_id,
            )
        return booking_outcome(doc, 201 if doc["idempotency_key"] == idempotency_key else 200)

    async def _changed_by(self, doc: Document, event_id: str) -> Outcome:
        """A retried change's answer: the booking once its document shows the change this
        idempotency key made first (the projector may be a moment behind the decision)."""

        async def changed(booking_id: str) -> Document | None:
            current = await self.repo.get(booking_id)
            applied = current is not None and event_id in current.get("applied_event_ids", ())
            return current if applied else None

        current = await wait_for_document(changed, doc["_id"], self.settings.decision_timeout_s)
        if current is None:
            return rejection_outcome(
                RejectionReason.DUPLICATE,
                "this change was already made; the booking does not show it yet",
                doc["timezone"],
            )
        return booking_outcome(current, 200)

    def change_renderer(self, doc: Document) -> Render:
        """Success: the document as the event changes it (the projector writes the same)."""

        async def render(envelope: Envelope[EventPayload]) -> Outcome:
            event = envelope.payload
            if isinstance(event, CommandFailed) and event.decided_event_id is not None:
                return await self._changed_by(doc, event.decided_event_id)
            if isinstance(event, BookingRejected | CommandFailed):
                alternatives = event.alternatives if isinstance(event, BookingRejected) else []
                return rejection_outcome(event.reason, event.detail, doc["timezone"], alternatives)
            return booking_outcome(apply_change(doc, envelope), 200)

        return render


@late_renderer("request")
def _late_request(gateway: CommandGateway, late: LateRender) -> Render:
    return gateway.request_renderer(late.idempotency_key or "", late.timezone)


@late_renderer("change")
def _late_change(gateway: CommandGateway, late: LateRender) -> Render:
    missing = Outcome.problem(404, "unknown_booking", f"no booking {late.subject_id!r}")
    wait = gateway.settings.projection_wait_s
    return after_reading(gateway.repo.get, late.subject_id, wait, missing, gateway.change_renderer)
