"""The processor's tables leave the cyclic garbage collector little to walk: what a booking
adds to them is mostly values the collector does not track, so middle and full collections
do not grow with the bookings held (`processor_state`)."""

from __future__ import annotations

import datetime as dt
import gc

import orjson

from bench import decisions
from optisync_common.clock import FixedClock
from optisync_common.txstream import ChangelogTable
from schemas.serde import encode
from services.booking.adapters.processor_state import day_from_json, outputs_from_record
from services.booking.entrypoints.processor import BatchDecider
from services.booking.settings import BookingSettings

from .storefixture import request
from .test_batch_decider import NOW, record, seeded_tables

FIRST = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)  # 09:00 in Berlin, the store's one shift day
STARTS = [FIRST + dt.timedelta(minutes=15 * quarter) for quarter in range(32)]


def book(
    decider: BatchDecider, tables: dict[str, ChangelogTable], starts: list[dt.datetime], tag: str
) -> None:
    for n, start in enumerate(starts):
        message = encode(request("berlin", start, key=f"{tag}{n}", now=NOW))
        decider(3, [record(n, message.value, list(message.headers))], tables)


def tracked() -> int:
    gc.collect()
    return len(gc.get_objects())


def test_a_booking_leaves_about_one_tracked_object_in_the_tables():
    """On the bench's store, where every request fits: its interval in the decoded store-day.
    It was four, with lists in the store-day's JSON and in the idempotency record."""
    tables = decisions.seeded_tables(days=3)
    records = decisions.booking_commands(days=3)
    decider = BatchDecider(BookingSettings(environment="test"), FixedClock(decisions.NOW))
    decider(0, records[:20], tables)
    before, held = tracked(), len(tables["bookings"])
    for i in range(20, len(records), 4):
        decider(0, records[i : i + 4], tables)
    booked = len(tables["bookings"]) - held
    assert booked == len(records) - 20
    assert tracked() - before <= 1.5 * booked


def test_a_store_days_intervals_are_untracked_tuples_with_the_same_json():
    tables = seeded_tables()
    decider = BatchDecider(BookingSettings(environment="test"), FixedClock(NOW))
    book(decider, tables, STARTS[:8], "k")
    gc.collect()
    (day,) = [v for k, v in tables["days"].items() if v["busy"]]
    entries = [entry for busy in day["busy"].values() for entry in busy]
    assert len(entries) == 8 and not any(gc.is_tracked(entry) for entry in entries)
    assert day_from_json(orjson.loads(orjson.dumps(day))) == day_from_json(day)


def test_an_idempotency_record_is_never_tracked():
    tables = seeded_tables()
    decider = BatchDecider(BookingSettings(environment="test"), FixedClock(NOW))
    book(decider, tables, [FIRST], "k")
    assert not gc.is_tracked(tables["idem"]["berlin|k0"])


def test_a_record_with_its_outputs_in_a_list_still_replays():
    """Records written before the outputs became one string hold a list of them."""
    tables = seeded_tables()
    decider = BatchDecider(BookingSettings(environment="test"), FixedClock(NOW))
    message = encode(request("berlin", FIRST, key="k0", now=NOW))
    first = decider(3, [record(0, message.value, list(message.headers))], tables)
    stored = tables["idem"]["berlin|k0"]
    tables["idem"]["berlin|k0"] = {**stored, "outputs": outputs_from_record(stored["outputs"])}
    again = decider(3, [record(1, message.value, list(message.headers))], tables)
    decided = [o.value for o in first if o.partition is None]
    assert len(decided) >= 2 and [o.value for o in again if o.partition is None] == decided


def test_a_batch_leaves_no_cyclic_garbage():
    """What a batch makes is freed by reference counting: the cyclic collector, which stops
    the event loop while it runs, finds none of it."""
    tables = seeded_tables()
    decider = BatchDecider(BookingSettings(environment="test"), FixedClock(NOW))
    book(decider, tables, STARTS[:2], "warm")
    gc.collect()
    gc.disable()
    try:
        book(decider, tables, STARTS[2:12], "k")
        assert gc.collect() == 0
    finally:
        gc.enable()
