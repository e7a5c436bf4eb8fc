"""The processor's tables stop growing: store-days and bookings past the retention are
forgotten, a slice of keys per batch, and nothing within it is touched."""

from __future__ import annotations

import datetime as dt

import pytest

from optisync_common.clock import FixedClock
from optisync_common.txstream import ChangelogTable
from schemas.events.base import RejectionReason
from schemas.events.booking import BookingConfirmed, CancelBooking, CommandFailed
from schemas.registry import AVAILABILITY
from services.booking.adapters.processor import AvailabilityProcessor, ProcessorTables
from services.booking.adapters.processor_retention import PastRetirement
from services.booking.entrypoints.processor import TABLES, BatchDecider
from services.booking.settings import BookingSettings

from .storefixture import berlin_store, env, request

BOOKED_AT = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
DAY = dt.date(2026, 12, 7)  # the fixture's shift day
SLOT = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)  # 10:00 Berlin


def booked_store() -> tuple[AvailabilityProcessor, ProcessorTables, str]:
    proc, tables = berlin_store(day=DAY)
    (confirmed,) = [
        o.payload
        for o in proc.handle(request("berlin", SLOT, key="k1", now=BOOKED_AT), BOOKED_AT)
        if isinstance(o.payload, BookingConfirmed)
    ]
    return proc, tables, confirmed.booking_id


def test_a_day_and_its_bookings_are_forgotten_once_past_the_retention() -> None:
    proc, tables, booking_id = booked_store()
    assert f"berlin|{DAY}" in tables.days and booking_id in tables.bookings
    retirement = PastRetirement(retain_days=30)

    within = dt.datetime(2027, 1, 6, 12, tzinfo=dt.UTC)  # 30 days after: still kept
    assert not retirement.step(tables, within)
    assert f"berlin|{DAY}" in tables.days and booking_id in tables.bookings

    later = PastRetirement(retain_days=30)
    past = dt.datetime(2027, 1, 8, 12, tzinfo=dt.UTC)  # 32 days after
    forgotten = later.step(tables, past)
    assert forgotten.days == [("berlin", DAY)] and forgotten.bookings == 1
    assert f"berlin|{DAY}" not in tables.days and booking_id not in tables.bookings
    assert "berlin" in tables.configs  # the store itself stays

    # A change to it now is answered as for an unknown booking, with the reason given.
    cancel = env(
        "berlin", CancelBooking(booking_id=booking_id, idempotency_key="c1", by="store"), past
    )
    (failed,) = [o.payload for o in proc.handle(cancel, past)]
    assert isinstance(failed, CommandFailed)
    assert failed.reason is RejectionReason.UNKNOWN_BOOKING and "retention" in failed.detail


def test_a_sweep_looks_at_a_slice_per_batch_and_comes_round_again() -> None:
    tables = ProcessorTables({}, {}, {}, {})
    for day in range(10):
        date = (dt.date(2026, 1, 1) + dt.timedelta(days=day)).isoformat()
        tables.days[f"s|{date}"] = {"date": date}
        tables.bookings[f"b{day}"] = {"date": date}
    now = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    retirement = PastRetirement(retain_days=30, every_s=3600, per_batch=3)

    steps = []
    while True:
        steps.append(len(retirement.step(tables, now)))
        if not retirement.sweeping:
            break
    assert steps == [3, 3, 3, 3, 3, 3, 2]  # 20 keys, 3 a batch
    assert not tables.days and not tables.bookings

    tables.days["s|2026-01-20"] = {"date": "2026-01-20"}  # e.g. a late roster change
    assert not retirement.step(tables, now + dt.timedelta(minutes=59))  # not due yet
    assert len(retirement.step(tables, now + dt.timedelta(hours=1))) == 1
    assert not tables.days


def test_a_retention_below_one_day_is_refused() -> None:
    with pytest.raises(ValueError, match="retain_days"):
        PastRetirement(retain_days=0)


def test_the_batch_step_sends_tombstones_to_the_changelog_and_for_the_days_views() -> None:
    _, seeded, booking_id = booked_store()
    tables = {name: ChangelogTable() for name in TABLES}
    for name in TABLES:
        for key, value in getattr(seeded, name).items():
            tables[name].restore(key, value)
    past = dt.datetime(2027, 2, 1, tzinfo=dt.UTC)
    decider = BatchDecider(BookingSettings(environment="test"), FixedClock(past))
    outputs = decider(3, [], tables)  # a punctuation: no records, the sweep still runs
    assert tables["days"].take_changes() == [(f"berlin|{DAY}", None)]
    assert tables["bookings"].take_changes() == [(booking_id, None)]
    assert [(o.topic, o.key, o.value, o.partition) for o in outputs] == [
        (AVAILABILITY, f"berlin:{DAY}".encode(), None, 3)
    ]
    assert decider(3, [], tables) == []  # nothing more to forget
