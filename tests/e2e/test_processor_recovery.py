"""Kill the stack's availability processor (SIGKILL) mid-stream and restart it: its tables
recover from the changelogs, every command gets exactly one decision (nothing half-applied is
visible: the processor commits in transactions), and the decisions equal those of the pure
domain applied to the same commands in order."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import time
from collections import defaultdict
from typing import Any

import pytest
from aiokafka import TopicPartition

from deploy.local.procs import ManagedProcess
from optisync_common.kafka import EventPublisher, make_consumer, make_producer
from optisync_common.settings import ServiceSettings
from schemas.envelope import new_envelope
from schemas.events.base import EventPayload
from schemas.events.booking import BookingConfirmed, BookingRejected, Customer, RequestBooking
from schemas.events.roster import (
    ExamTypeDefined,
    OptometristJoined,
    ShiftPublished,
    StoreRegistered,
)
from schemas.registry import AVAILABILITY, BOOKING_EVENTS, topic
from schemas.serde import decode
from services.booking.adapters.processor import AvailabilityProcessor, ProcessorTables

pytestmark = pytest.mark.e2e

PARTITIONS = topic(BOOKING_EVENTS).partitions
DAY = dt.date(2030, 6, 3)  # far ahead: no command is ever "in the past"
COMMANDS = 400


def _roster(store_id: str) -> list[EventPayload]:
    hours = {d: [{"open": "08:00", "close": "20:00"}] for d in range(7)}
    events: list[EventPayload] = [
        StoreRegistered(store_id=store_id, name="R", region="eu", timezone="Europe/Berlin",
                        opening_hours=hours),
        ExamTypeDefined(code="std", name="Std", duration_minutes=30, required_skill="general"),
        ExamTypeDefined(code="long", name="Long", duration_minutes=60, required_skill="general"),
    ]  # fmt: skip
    for o in ("o1", "o2", "o3"):
        events += [
            OptometristJoined(optometrist_id=o, name=o, skills=["general"],
                              home_store_id=store_id, store_ids=[store_id]),
            ShiftPublished(shift_id=f"{store_id}-{o}", optometrist_id=o, store_id=store_id,
                           date=DAY, start="08:00", end="20:00"),
        ]  # fmt: skip
    return events


def _commands(store_id: str) -> list[RequestBooking]:
    first = dt.datetime(2030, 6, 3, 6, 0, tzinfo=dt.UTC)  # 08:00 Berlin (UTC+2)
    commands = []
    for i in range(COMMANDS):
        slot = first + dt.timedelta(minutes=15 * ((i * 7) % 44))  # many collide on purpose
        commands.append(
            RequestBooking(
                booking_id=f"{store_id}-b{i}", idempotency_key=f"{store_id}-k{i}",
                channel=["web", "wechat", "phone"][i % 3],
                customer=Customer(customer_ref=f"c{i}"), exam_type=["std", "long"][i % 2],
                slot_start=slot, requested_at=first,
            )
        )  # fmt: skip
    return commands


def _expected(store_id: str, now: dt.datetime) -> dict[str, str]:
    """booking id -> outcome, from the pure domain applied in the same order."""
    proc = AvailabilityProcessor(ProcessorTables({}, {}, {}, {}), region="eu")
    for payload in _roster(store_id):
        proc.handle(new_envelope(payload, region="eu", store_id=store_id, correlation_id="r",
                                 occurred_at=now), now)  # fmt: skip
    outcome = {}
    for cmd in _commands(store_id):
        env = new_envelope(cmd, region="eu", store_id=store_id, correlation_id=cmd.booking_id,
                           occurred_at=now)  # fmt: skip
        decision = proc.handle(env, now)[0].payload
        outcome[cmd.booking_id] = (
            "confirmed" if isinstance(decision, BookingConfirmed) else decision.reason
        )
    return outcome


def test_kill_and_restart_mid_stream_loses_and_duplicates_nothing(
    running_stack, restart_missing, infra_config, endpoints, unique_id
):
    proc = ManagedProcess(
        "booking-processor", infra_config.run_dir / "services" / "booking-processor"
    )
    store_id = f"rec-{unique_id}"
    settings = endpoints.settings(ServiceSettings, service_name="e2e", environment="test")
    now = dt.datetime.now(dt.UTC)
    # booking id -> the event id of every decision record read: a decision committed twice
    # (the same event id again, as a replay makes it) would show as two.
    decisions: dict[str, list[str]] = defaultdict(list)
    outcomes: dict[str, str] = {}

    async def scenario() -> None:
        producer = make_producer(settings)
        # Explicit assignment, no group: nothing to rebalance while the processor restarts.
        consumer = make_consumer(settings, group_id=None)
        await producer.start()
        await consumer.start()
        consumer.assign([TopicPartition(BOOKING_EVENTS, p) for p in range(PARTITIONS)])
        await consumer.seek_to_end()
        publisher = EventPublisher(producer)
        try:
            for roster_event in _roster(store_id):
                roster = new_envelope(roster_event, region="eu", store_id=store_id,
                                      correlation_id="roster", occurred_at=now)  # fmt: skip
                await publisher.publish(roster)
            await _roster_applied(settings, store_id)
            sends = []
            for cmd in _commands(store_id):
                env = new_envelope(cmd, region="eu", store_id=store_id,
                                   correlation_id=cmd.booking_id, occurred_at=now)  # fmt: skip
                sends.append(publisher.publish(env))
            await asyncio.gather(*sends)
            restarting: asyncio.Task[None] | None = None
            async with asyncio.timeout(180):
                async for record in consumer:
                    event = decode(record.value, record.headers)
                    if event.store_id != store_id:
                        continue
                    payload: Any = event.payload
                    if isinstance(payload, BookingConfirmed | BookingRejected):
                        decisions[payload.booking_id].append(str(event.event_id))
                        outcomes[payload.booking_id] = (
                            "confirmed" if isinstance(payload, BookingConfirmed) else payload.reason
                        )
                    if restarting is None and len(decisions) >= COMMANDS // 3:
                        pid = proc.pid()
                        assert pid is not None
                        os.kill(pid, signal.SIGKILL)  # no graceful shutdown, no final commit
                        restarting = asyncio.create_task(
                            asyncio.to_thread(_restart_after_death, proc, restart_missing)
                        )
                    if len(decisions) == COMMANDS:
                        break
            assert restarting is not None
            await restarting  # surfaces a failed restart
            # A duplicate may come after the last first decision: read on to the end (3 s
            # without a record; other tests' stores may still write, so 30 s at most).
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (
                batch := await consumer.getmany(timeout_ms=3000)
            ):
                for record in (r for records in batch.values() for r in records):
                    event = decode(record.value, record.headers)
                    if event.store_id == store_id and isinstance(
                        event.payload, BookingConfirmed | BookingRejected
                    ):
                        decisions[event.payload.booking_id].append(str(event.event_id))
        finally:
            await consumer.stop()
            await producer.stop()

    asyncio.run(scenario())
    assert len(decisions) == COMMANDS
    twice = {booking: ids for booking, ids in decisions.items() if len(ids) > 1}
    assert not twice, f"decisions published more than once: {twice}"
    expected = _expected(store_id, now)
    assert outcomes == expected
    confirmed = sum(1 for o in outcomes.values() if o == "confirmed")
    assert 0 < confirmed < COMMANDS  # the scenario really had winners and losers


async def _roster_applied(settings: ServiceSettings, store_id: str) -> None:
    """Roster events and commands are different topics (no order between them): wait until
    the processor has applied this store's shifts before sending commands."""
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(AVAILABILITY, p) for p in range(PARTITIONS)])
        async with asyncio.timeout(60):
            async for record in consumer:
                if record.key is None or not record.key.startswith(store_id.encode()):
                    continue
                view = decode(record.value, record.headers).payload
                if getattr(view, "seq", 0) >= 3:
                    return
    finally:
        await consumer.stop()


def _restart_after_death(proc: ManagedProcess, restart: Any) -> None:
    deadline = time.monotonic() + 10
    while proc.is_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    restart()
