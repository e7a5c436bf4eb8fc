"""A status read's late lookup against the real Redis: with the broker away it answers pending
(and counts the failure), and a lookup's progress never overwrites an outcome saved meanwhile.
The lookup finding decisions is in test_api.py."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, replace

from prometheus_client import REGISTRY

from optisync_common.resources import Resources
from services.booking.adapters.bookings import BookingRepository
from services.booking.adapters.replies import (
    PENDING,
    CommandOutcomes,
    LateLookup,
    Outcome,
    ReplyWaiter,
)
from services.booking.api.commands import CommandGateway, LateRender
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
