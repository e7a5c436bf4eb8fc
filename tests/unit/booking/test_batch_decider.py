"""The processor's batch step: decisions for good records, dead letters for the rest, in order."""

from __future__ import annotations

import datetime as dt

from aiokafka.structs import ConsumerRecord

from optisync_common.clock import FixedClock
from optisync_common.txstream import ChangelogTable
from schemas.events.dlq import DeadLetter
from schemas.registry import AVAILABILITY, BOOKING_COMMANDS, BOOKING_EVENTS, dlq_topic_for
from schemas.serde import decode, encode
from services.booking.adapters.processor_state import outputs_from_record
from services.booking.entrypoints.processor import TABLES, BatchDecider
from services.booking.settings import BookingSettings

from .storefixture import berlin_store, request

NOW = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)


def record(offset: int, value: bytes, headers: list[tuple[str, bytes]]) -> ConsumerRecord:
    return ConsumerRecord(
        topic=BOOKING_COMMANDS, partition=3, offset=offset, timestamp=0, timestamp_type=0,
        key=b"berlin", value=value, checksum=None, serialized_key_size=6,
        serialized_value_size=len(value), headers=headers,
    )  # fmt: skip


def seeded_tables() -> dict[str, ChangelogTable]:
    _, seeded = berlin_store()
    tables = {name: ChangelogTable() for name in TABLES}
    for name in TABLES:
        for key, value in getattr(seeded, name).items():
            tables[name].restore(key, value)
    return tables


def test_a_bad_record_is_dead_lettered_between_decisions():
    tables = seeded_tables()
    slot = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)  # 10:00 Berlin
    good = encode(request("berlin", slot, key="k1", now=NOW))
    decider = BatchDecider(BookingSettings(environment="test"), FixedClock(NOW))
    outputs = decider(
        3,
        [
            record(0, good.value, list(good.headers)),
            record(1, b"{not json", []),
            record(2, good.value, list(good.headers)),  # the same message again
        ],
        tables,
    )
    topics = [o.topic for o in outputs]
    dlq_at = topics.index(dlq_topic_for(BOOKING_COMMANDS))
    assert BOOKING_EVENTS in topics[:dlq_at] and BOOKING_EVENTS in topics[dlq_at + 1 :]
    letter = decode(outputs[dlq_at].value or b"").payload
    assert isinstance(letter, DeadLetter)
    assert letter.offset == 1 and letter.original_topic == BOOKING_COMMANDS
    decisions = [decode(o.value or b"") for o in outputs if o.topic == BOOKING_EVENTS]
    assert decisions[0].type == "BookingConfirmed"
    assert decisions[-1].event_id == decisions[0].event_id  # replayed, not decided twice
    assert len(tables["bookings"]) == 1
    assert {k for k, _ in tables["bookings"].take_changes()} == set(tables["bookings"])


def test_a_decision_publishes_the_bytes_its_idempotency_record_replays():
    """Each output is encoded once, for the record and for publishing alike."""
    tables = seeded_tables()
    slot = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)
    first = encode(request("berlin", slot, key="k1", now=NOW))
    second = encode(request("berlin", slot + dt.timedelta(hours=1), key="k2", now=NOW))
    decider = BatchDecider(BookingSettings(environment="test"), FixedClock(NOW))
    outputs = decider(
        3, [record(0, first.value, first.headers), record(1, second.value, second.headers)], tables
    )
    published = [(o.value or b"").decode() for o in outputs if o.topic != AVAILABILITY]
    kept = [
        *outputs_from_record(tables["idem"]["berlin|k1"]["outputs"]),
        *outputs_from_record(tables["idem"]["berlin|k2"]["outputs"]),
    ]
    assert published == kept
    assert [decode(v.encode()).type for v in kept].count("BookingConfirmed") == 2
    assert len([o for o in outputs if o.topic == AVAILABILITY]) == 1  # one view per store-day
