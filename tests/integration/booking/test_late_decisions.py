"""A status read's late lookup against the real Redis: with the broker away it answers pending
(and counts the failure), and a lookup's progress never overwrites an outcome saved meanwhile.
The lookup finding decisions is in test_api.py. Also the lookups kept in MongoDB (real FerretDB)
for a Redis loss."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from dataclasses import asdict, replace
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pymongo import AsyncMongoClient

from optisync_common.problems import ProblemError
from optisync_common.resources import Resources
from schemas.envelope import new_envelope
from schemas.events.base import RejectionReason
from schemas.events.booking import CancelBooking, CommandFailed
from services.booking.adapters.bookings import BookingRepository
from services.booking.adapters.late_decisions import KeptLookups
from services.booking.adapters.replies import (
    PENDING,
    CommandOutcomes,
    LateLookup,
    Outcome,
    ReplyWaiter,
)
from services.booking.api.commands import FAILURES, CommandGateway, LateRender
from services.booking.settings import BookingSettings


def _lookup(sent_ms: int) -> LateLookup:
    render = asdict(LateRender("request", "key-1", "Europe/Berlin"))
    return LateLookup("s-late", uuid.uuid4().hex, ("BookingConfirmed",), sent_ms, render)


def _failed() -> float:
    sample = REGISTRY.get_sample_value(
        "optisync_booking_late_decision_lookups_total", {"result": "failed"}
    )
    return sample or 0.0


async def test_with_the_broker_away_an_overdue_status_stays_pending(
    booking_settings: BookingSettings, resources: Resources
) -> None:
    assert resources.redis is not None
    away = booking_settings.model_copy(
        update={"kafka_bootstrap": "127.0.0.1:1", "late_decision_after_s": 0.0}
    )
    outcomes = CommandOutcomes(resources.redis, "late-test:", 60)
    waiter = ReplyWaiter(away, outcomes)  # never started: no process waits for the command
    gateway = CommandGateway(away, resources, waiter, BookingRepository(resources.db))
    correlation_id = uuid.uuid4().hex
    await outcomes.mark_pending(correlation_id, _lookup(int(time.time() * 1000) - 60_000))
    failed_before = _failed()
    assert await gateway.status(correlation_id) == PENDING
    assert _failed() == failed_before + 1
    # claimed for `late_decision_every_s`: a second read at once does not look again
    assert await gateway.status(correlation_id) == PENDING
    assert _failed() == failed_before + 1
    assert await gateway.status(uuid.uuid4().hex) is None  # unknown command


async def test_a_lookups_progress_never_overwrites_an_outcome_saved_meanwhile(
    resources: Resources,
) -> None:
    assert resources.redis is not None
    outcomes = CommandOutcomes(resources.redis, "late-test:", 60)
    correlation_id = uuid.uuid4().hex
    lookup = _lookup(int(time.time() * 1000))
    await outcomes.mark_pending(correlation_id, lookup)
    progressed = replace(lookup, scanned_to=7)
    await outcomes.save_progress(correlation_id, progressed)
    stored = await outcomes.get(correlation_id)
    assert stored is not None and LateLookup.of_pending(stored) == progressed
    assert 0 < await resources.redis.ttl(outcomes.key(correlation_id)) <= 60  # TTL kept

    done = Outcome(201, b'{"booking_id":"b-1"}')
    await outcomes.save([(correlation_id, done)])
    await outcomes.save_progress(correlation_id, progressed)
    assert await outcomes.get(correlation_id) == done.stored()


async def test_a_kept_lookup_is_read_back_until_it_expires_then_purged(
    resources: Resources,
) -> None:
    kept = KeptLookups(resources.db, ttl_s=60)
    lookup, correlation_id = _lookup(int(time.time() * 1000)), uuid.uuid4().hex
    await kept.keep(correlation_id, lookup)
    await kept.keep(correlation_id, lookup)  # twice: still one, no error
    found = await kept.get(correlation_id)
    assert found is not None
    assert found[0] == lookup
    assert 55 <= found[1] <= 60  # seconds its status stays readable
    assert await kept.get(uuid.uuid4().hex) is None

    expired = uuid.uuid4().hex
    await kept.coll.insert_one({
        "_id": expired, "lookup": asdict(lookup),
        "expires_at": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1),
    })  # fmt: skip
    assert await kept.get(expired) is None  # expired: unknown, even before the purge
    later = KeptLookups(resources.db, ttl_s=60)  # a fresh process purges on its first keep
    await later.keep(uuid.uuid4().hex, lookup)
    assert await kept.coll.find_one({"_id": expired}) is None
    assert await kept.coll.find_one({"_id": correlation_id}) is not None


async def test_a_status_redis_lost_while_mongodb_does_not_answer_is_503_not_404(
    booking_settings: BookingSettings, resources: Resources
) -> None:
    assert resources.redis is not None
    outcomes = CommandOutcomes(resources.redis, "late-test:", 60)
    gateway = CommandGateway(
        booking_settings, resources, ReplyWaiter(booking_settings, outcomes),
        BookingRepository(resources.db),
    )  # fmt: skip
    away: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        "mongodb://127.0.0.1:1/", serverSelectionTimeoutMS=300
    )
    try:
        gateway.kept = KeptLookups(away["booking"], 60)
        with pytest.raises(ProblemError) as raised:
            await gateway.status(uuid.uuid4().hex)  # not in Redis: MongoDB is asked
    finally:
        await away.close()
    assert (raised.value.status, raised.value.code) == (503, "unavailable")


async def test_a_decision_made_while_the_reply_consumer_reconnects_reaches_its_request(
    booking_settings: BookingSettings, resources: Resources
) -> None:
    """The reply consumer drops and comes back; a decision published meanwhile, on a partition
    that had nothing since the API started, is read from where the consumer started, not
    skipped (it sought to the end again, and the request waited 15 min for nothing)."""
    assert resources.redis is not None and resources.publisher is not None
    waiter = ReplyWaiter(booking_settings, CommandOutcomes(resources.redis, "reconnect:", 60))
    await waiter.start()
    try:
        now = dt.datetime.now(dt.UTC)
        cancel = CancelBooking(booking_id="b-gone", idempotency_key="k", by="store")
        command = new_envelope(cancel, region="cn", store_id=f"reconnect-{uuid.uuid4().hex}",
                               correlation_id=uuid.uuid4().hex, occurred_at=now)  # fmt: skip

        async def render(envelope: Any) -> Outcome:
            return Outcome(200, envelope.type.encode())

        pending = waiter.expect(
            command.correlation_id, str(command.event_id), FAILURES, render, wait_s=30
        )
        assert waiter._consumer is not None
        await waiter._consumer.stop()  # the connection drops: the waiter reconnects
        failed = CommandFailed(command_type=command.type, command_event_id=str(command.event_id),
                               reason=RejectionReason.UNKNOWN_BOOKING)  # fmt: skip
        await resources.publisher.publish(command.derive(failed, occurred_at=now))
        outcome = await asyncio.wait_for(pending.future, 30)
        assert (outcome.status, outcome.body) == (200, b"CommandFailed")
    finally:
        await waiter.stop()
