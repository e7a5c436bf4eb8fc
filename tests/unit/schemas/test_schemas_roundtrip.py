"""Every catalogued event survives encode -> decode unchanged and matches its exported schema."""

from __future__ import annotations

import base64
import datetime as dt
import json

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import (
    BOOKING_COMMANDS,
    EVENT_TYPES,
    Channel,
    Customer,
    DeadLetter,
    EventPayload,
    RequestBooking,
    decode,
    encode,
    new_envelope,
    topic,
)
from schemas.examples import EXAMPLE_STORE, EXAMPLE_TIME, example_envelope, example_payload
from schemas.export import SCHEMA_DIR, schema_path

ALL_TYPES = sorted(EVENT_TYPES.values(), key=lambda c: c.event_type)


def test_every_event_type_has_an_example_and_a_registered_topic() -> None:
    assert len(EVENT_TYPES) >= 40
    for name, cls in EVENT_TYPES.items():
        assert cls.event_type == name
        payload = example_payload(cls)
        assert isinstance(payload, cls)
        assert name in topic(payload.default_topic()).events


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda c: c.event_type)
def test_round_trip(cls: type[EventPayload]) -> None:
    envelope = example_envelope(cls)
    message = encode(
        envelope, trace_parent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    )

    decoded = decode(message.value, message.headers)

    assert decoded == envelope
    assert type(decoded.payload) is cls
    assert message.topic == envelope.payload.default_topic()
    assert cls.event_type in topic(message.topic).events
    headers = dict(message.headers)
    assert headers["content-type"] == b"application/json"
    assert headers["event-type"] == cls.event_type.encode()
    assert headers["event-version"] == cls.event_version.encode()
    assert headers["traceparent"].startswith(b"00-")
    # Compact JSON, UTC instants with a Z suffix.
    assert b": " not in message.value
    assert b'"occurred_at":"2024-05-01T01:00:00Z"' in message.value


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda c: c.event_type)
def test_wire_value_matches_committed_json_schema(cls: type[EventPayload]) -> None:
    message = encode(example_envelope(cls))
    body = orjson.loads(message.value)
    envelope_schema = json.loads((SCHEMA_DIR / "envelope.json").read_text())
    payload_schema = json.loads((SCHEMA_DIR / schema_path(cls)).read_text())
    jsonschema.Draft202012Validator(envelope_schema).validate(body)
    jsonschema.Draft202012Validator(payload_schema).validate(body["payload"])


def test_keys_follow_the_registry() -> None:
    by_type = {name: encode(example_envelope(cls)).key for name, cls in EVENT_TYPES.items()}
    assert by_type["RequestBooking"] == EXAMPLE_STORE.encode()
    assert by_type["StoreDayAvailability"] == f"{EXAMPLE_STORE}:2024-05-03".encode()
    assert by_type["DeliveryAttempted"] == b"ntf-bk-1-confirmation"
    assert by_type["MessageReceived"] == by_type["MessageRouted"] == b"conv-1"
    assert by_type["DeadLetter"] == EXAMPLE_STORE.encode()  # the original key


def test_dead_letter_goes_to_the_dlq_of_its_original_topic() -> None:
    message = encode(example_envelope(DeadLetter))
    assert message.topic == "booking.events.dlq.v1"


_names = st.text(min_size=1, max_size=60).filter(lambda s: s.strip() != "")
_offsets = st.integers(min_value=-12 * 60, max_value=14 * 60).map(
    lambda m: dt.timezone(dt.timedelta(minutes=m))
)
_instants = st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=_offsets
)


@settings(max_examples=60, deadline=None)
@given(name=_names, slot_start=_instants, channel=st.sampled_from(list(Channel)))
def test_request_booking_round_trip_any_name_and_offset(
    name: str, slot_start: dt.datetime, channel: Channel
) -> None:
    payload = RequestBooking(
        booking_id="bk-h",
        idempotency_key="idem-h",
        channel=channel,
        customer=Customer(customer_ref="c-h", name=name, phone="+4915112345678"),
        exam_type="comprehensive",
        slot_start=slot_start,
        requested_at=EXAMPLE_TIME,
    )
    envelope = new_envelope(
        payload, region="eu", store_id="be-001", correlation_id="c", occurred_at=slot_start
    )
    message = encode(envelope)
    decoded = decode(message.value, message.headers)

    assert message.topic == BOOKING_COMMANDS
    assert decoded == envelope
    assert isinstance(decoded.payload, RequestBooking)
    assert decoded.payload.customer.name == name
    # Same instant, always normalised to UTC on the wire and in the model.
    assert decoded.payload.slot_start == slot_start
    assert decoded.payload.slot_start.utcoffset() == dt.timedelta(0)
    assert decoded.occurred_at.tzinfo == dt.UTC


@settings(max_examples=60, deadline=None)
@given(
    key=st.one_of(st.none(), st.binary(max_size=64)),
    value=st.one_of(st.none(), st.binary(max_size=512)),
    headers=st.lists(
        st.tuples(st.text(min_size=1, max_size=20), st.one_of(st.none(), st.binary())), max_size=4
    ),
)
def test_dead_letter_keeps_the_original_record_byte_exact(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes | None]]
) -> None:
    letter = DeadLetter.from_record(
        topic="eu.booking.events.v1",  # mirrored copy: the DLQ is still the local one
        partition=0,
        offset=7,
        key=key,
        value=value,
        headers=headers,
        error="boom",
        failed_at=EXAMPLE_TIME,
        consumer="analytics",
    )
    envelope = new_envelope(
        letter, region="cn", store_id="-", correlation_id="c", occurred_at=EXAMPLE_TIME
    )
    message = encode(envelope)
    decoded = decode(message.value, message.headers).payload

    assert message.topic == "booking.events.dlq.v1"
    assert message.key == key
    assert isinstance(decoded, DeadLetter)
    assert decoded.original_key() == key
    assert decoded.original_value() == value
    assert decoded.original_headers() == headers
    if value is not None:
        assert decoded.value_b64 == base64.b64encode(value).decode()
