"""The processor's decoded-state cache changes nothing: whatever the commands, roster changes
and failed transactions, a processor that keeps its decoded days and configurations across
batches emits the same events and leaves the same tables as one that decodes afresh."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events.booking import CancelBooking, RescheduleBooking
from schemas.events.roster import ExamTypeDefined, ShiftCancelled, ShiftPublished
from schemas.serde import encode
from services.booking.adapters.processor import AvailabilityProcessor
from services.booking.adapters.processor_state import DecodedState, day_from_json, day_to_json

from .storefixture import berlin_store, env, request

DAY = dt.date(2026, 12, 7)
NOW = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
FIRST = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)  # 09:00 in Berlin

quarter = st.integers(min_value=-1, max_value=34).map(
    lambda i: FIRST + dt.timedelta(minutes=15 * i)
)
book = st.tuples(st.just("book"), quarter, st.sampled_from([None, "A", "B"]), st.integers(0, 3))
cancel = st.tuples(st.just("cancel"), st.integers(0, 30))
move = st.tuples(st.just("move"), st.integers(0, 30), quarter)
shift = st.tuples(st.just("shift"), st.sampled_from(["drop", "restore"]))
exam = st.tuples(st.just("exam"), st.sampled_from([20, 40]))


def command(n: int, step: tuple[Any, ...], booked: list[str]) -> Any:
    kind = step[0]
    if kind == "book":
        _, start, who, customer = step
        return request(
            "berlin", start, key=f"k{n}", customer=f"c{customer}", optometrist=who, now=NOW
        )
    if kind == "exam":  # changes the store's configuration
        return env("berlin", ExamTypeDefined(code="lens", name="Lens fitting",
                                             duration_minutes=step[1], required_skill="general"),
                   NOW)  # fmt: skip
    if kind == "shift":
        payload: Any = (
            ShiftCancelled(shift_id=f"B-{DAY}", optometrist_id="B", store_id="berlin", date=DAY)
            if step[1] == "drop"
            else ShiftPublished(shift_id=f"B-{DAY}", optometrist_id="B", store_id="berlin",
                                date=DAY, start="09:00", end="13:00")
        )  # fmt: skip
        return env("berlin", payload, NOW)
    if not booked:
        return None
    target = booked[step[1] % len(booked)]
    if kind == "cancel":
        return env(
            "berlin", CancelBooking(booking_id=target, idempotency_key=f"x{n}", by="customer"), NOW
        )
    return env(
        "berlin",
        RescheduleBooking(booking_id=target, idempotency_key=f"x{n}", new_slot_start=step[2]),
        NOW,
    )


def run(processor: AvailabilityProcessor, message: Any) -> list[bytes]:
    outputs = processor.handle(message, NOW) + processor.flush_views()
    return [encode(o).value for o in outputs]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.one_of(book, cancel, move, shift, exam), st.booleans()), max_size=40))
def test_cached_and_fresh_decoding_decide_identically(steps):
    """Each step is a batch; a batch whose transaction fails is rolled back to the tables
    committed before it (a task's recovery), while the warm side keeps its decoded state."""
    _, seeded = berlin_store()
    warm_tables, cold_tables = copy.deepcopy(seeded), copy.deepcopy(seeded)
    decoded = DecodedState()
    booked: list[str] = []
    for n, (step, aborted) in enumerate(steps):
        message = command(n, step, booked)
        if message is None:
            continue
        committed = copy.deepcopy(warm_tables)
        warm = AvailabilityProcessor(warm_tables, "eu", coalesce_views=True, decoded=decoded)
        warm_outputs = run(warm, message)
        if aborted:
            warm_tables = committed
            continue
        cold = AvailabilityProcessor(cold_tables, "eu", coalesce_views=True)
        assert warm_outputs == run(cold, message)
        if step[0] == "book":
            booked.append(message.payload.booking_id)
    assert warm_tables == cold_tables


def test_a_day_survives_its_json_round_trip_as_its_copy():
    proc, tables = berlin_store()
    for i, hhmm in enumerate(("09:00", "09:00", "10:30")):
        proc.handle(request("berlin", FIRST.replace(hour=int(hhmm[:2]) - 1, minute=int(hhmm[3:])),
                            key=f"k{i}", customer=f"c{i}", now=NOW), NOW)  # fmt: skip
    stored = tables.days[f"berlin|{DAY}"]
    day = day_from_json(stored)
    assert day.copy() == day and day_to_json(day.copy()) == stored
    assert day.copy().busy is not day.busy
