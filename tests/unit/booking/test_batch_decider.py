"""The processor's batch step: decisions for good records, dead letters for the rest, in order."""

from __future__ import annotations

import dataclasses
import datetime as dt

from aiokafka.structs import ConsumerRecord

from optisync_common.clock import FixedClock
from optisync_common.txstream import ChangelogTable
from schemas.events.booking import CancelBooking, CommandFailed, Customer, JoinWaitlist
from schemas.events.dlq import DeadLetter
from schemas.registry import AVAILABILITY, BOOKING_COMMANDS, BOOKING_EVENTS, dlq_topic_for
from schemas.serde import decode, encode
from services.booking.adapters.processor import AvailabilityProcessor, ProcessorTables
from services.booking.adapters.processor_state import outputs_from_record
from services.booking.entrypoints.processor import TABLES, BatchDecider
from services.booking.settings import BookingSettings

from .storefixture import berlin_store, env, request

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


def test_a_record_that_fails_halfway_is_dead_lettered_with_none_of_its_changes(monkeypatch):
    """A fault after the decision wrote the tables (here: encoding its event) must not leave a
    booking holding the slot without a decision or an idempotency record."""
    tables = seeded_tables()
    before = {name: dict(table) for name, table in tables.items()}
    for table in tables.values():
        table.take_changes()
    slot = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)
    command = request("berlin", slot, key="k1", now=NOW)
    first = encode(command)

    def failing_encode(envelope, **kwargs):
        if envelope.type == "BookingConfirmed":
            raise ValueError("a bug after the tables changed")
        return encode(envelope, **kwargs)

    monkeypatch.setattr(f"{AvailabilityProcessor.__module__}.encode", failing_encode)
    decider = BatchDecider(BookingSettings(environment="test"), FixedClock(NOW))
    outputs = decider(3, [record(0, first.value, list(first.headers))], tables)
    assert [o.topic for o in outputs if o.topic != AVAILABILITY] == [
        dlq_topic_for(BOOKING_COMMANDS), BOOKING_EVENTS,
    ]  # fmt: skip
    # ... and answered, so that its request and status URL do not wait for nothing.
    answer = decode(next(o.value for o in outputs if o.topic == BOOKING_EVENTS) or b"")
    assert isinstance(answer.payload, CommandFailed)
    assert (answer.payload.reason, answer.causation_id) == ("internal_error", str(command.event_id))
    assert {name: dict(table) for name, table in tables.items()} == before
    assert not any(table.changed for table in tables.values())

    monkeypatch.undo()
    again = encode(request("berlin", slot, key="k2", now=NOW))
    outputs = decider(3, [record(1, again.value, list(again.headers))], tables)
    decided = [decode(o.value or b"") for o in outputs if o.topic == BOOKING_EVENTS]
    assert [d.type for d in decided] == ["BookingConfirmed"]  # the slot was still free


def test_any_record_gets_a_dead_letter_the_broker_takes():
    """A key longer than an envelope's store id, or a value near the broker's 1 MiB limit:
    the dead letter is still made (a consumer that cannot make one is stuck on the record)."""
    tables = seeded_tables()
    decider = BatchDecider(BookingSettings(environment="test"), FixedClock(NOW))
    long_key = dataclasses.replace(record(0, b"{not json", []), key=b"s" * 300)
    huge_value = record(1, b"{" + b"a" * 900_000, [])
    outputs = decider(3, [long_key, huge_value], tables)
    assert [o.topic for o in outputs] == [dlq_topic_for(BOOKING_COMMANDS)] * 2
    envelopes = [decode(o.value or b"") for o in outputs]
    assert envelopes[0].store_id == "s" * 128
    long_key_letter, huge_value_letter = (e.payload for e in envelopes)
    assert isinstance(long_key_letter, DeadLetter) and isinstance(huge_value_letter, DeadLetter)
    assert long_key_letter.original_key() == b"s" * 300
    assert huge_value_letter.value_b64 is None
    assert "value (900001 bytes)" in huge_value_letter.error
    assert all(len(o.value or b"") + len(o.key or b"") < 512 * 1024 for o in outputs)


def test_a_command_whose_state_would_be_too_large_is_dead_lettered_and_answered(monkeypatch):
    """Its store-day (or any table value) over the record limit would fail every transaction
    of the group: the command fails alone, changes nothing, and its request is answered."""
    tables = seeded_tables()
    for table in tables.values():
        table.take_changes()
    before = {name: dict(table) for name, table in tables.items()}
    monkeypatch.setattr("optisync_common.txstream.MAX_RECORD_BYTES", 1_000)  # a store-day's size
    command = request("berlin", dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC), key="k1", now=NOW)
    message = encode(command)
    decider = BatchDecider(BookingSettings(environment="test"), FixedClock(NOW))
    outputs = decider(3, [record(0, message.value, list(message.headers))], tables)
    assert [o.topic for o in outputs if o.topic != AVAILABILITY] == [
        dlq_topic_for(BOOKING_COMMANDS), BOOKING_EVENTS,
    ]  # fmt: skip
    letter = decode(outputs[0].value or b"").payload
    assert isinstance(letter, DeadLetter) and "would be over 1000 bytes" in letter.error
    answer = decode(outputs[1].value or b"").payload
    assert isinstance(answer, CommandFailed) and answer.reason == "internal_error"
    assert {name: dict(table) for name, table in tables.items()} == before


def test_idempotency_records_restored_in_key_order_still_expire_oldest_first():
    """A restore from the local copy loads the records in key order; expiry stops at the first
    live one, so unordered, records past the TTL behind it were kept for up to a day more."""
    tables = seeded_tables()
    day = 24 * 3600
    at = int(NOW.timestamp())
    restored = {"berlin|a-new": at, "berlin|b-old": at - day - 60, "berlin|c-old": at - day - 30}
    for key, written in restored.items():  # key order, as the copy gives them
        tables["idem"].restore(key, {"cmd": key, "at": written, "outputs": ""})
    decider = BatchDecider(BookingSettings(environment="test"), FixedClock(NOW))
    decider(3, [], tables)
    assert list(tables["idem"]) == ["berlin|a-new"]


def test_a_store_whose_tick_fails_does_not_keep_other_stores_holds_from_lapsing(monkeypatch):
    tables = seeded_tables()
    setup = AvailabilityProcessor(ProcessorTables(**{name: tables[name] for name in TABLES}), "eu")
    ten = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)  # 10:00 Berlin
    for who in ("A", "B"):
        setup.handle(request("berlin", ten, key=f"k{who}", customer=who, optometrist=who, now=NOW),
                     NOW)  # fmt: skip
    join = JoinWaitlist(idempotency_key="j", waitlist_entry_id="w1", channel="web",
                        customer=Customer(customer_ref="c1"), exam_type="standard",
                        date_from=ten.date(), date_to=ten.date())  # fmt: skip
    setup.handle(env("berlin", join, NOW), NOW)
    cancel = CancelBooking(idempotency_key="c", booking_id="b-kA", by="customer")
    assert [o.type for o in setup.handle(env("berlin", cancel, NOW), NOW)].count("SlotOffered")

    real_tick = AvailabilityProcessor.tick_store

    def tick_store(self: AvailabilityProcessor, store_id: str, now: dt.datetime) -> list:
        if store_id == "broken":
            raise RuntimeError("a bug in one store's waitlist")
        return real_tick(self, store_id, now)

    monkeypatch.setattr(AvailabilityProcessor, "tick_store", tick_store)
    monkeypatch.setattr(AvailabilityProcessor, "due_stores", lambda self, now: ["broken", "berlin"])
    later = NOW + dt.timedelta(hours=1)  # past the hold
    outputs = BatchDecider(BookingSettings(environment="test"), FixedClock(later))(3, [], tables)
    events = [decode(o.value or b"").type for o in outputs if o.topic == BOOKING_EVENTS]
    assert "OfferExpired" in events
