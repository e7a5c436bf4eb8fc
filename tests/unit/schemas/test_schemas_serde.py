"""Decoding failures, tolerant reading, upcasting and envelope rules."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, ClassVar

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import (
    BOOKING_COMMANDS,
    BookingConfirmed,
    CancelBooking,
    DecodeError,
    Envelope,
    EventPayload,
    FeedbackReceived,
    RequestBooking,
    UpcasterRegistry,
    decode,
    deterministic_event_id,
    encode,
    encode_key,
    forward_topic,
    header_value,
    new_envelope,
)
from schemas.examples import EXAMPLE_TIME, example_envelope, example_payload


def _wire(cls: type[EventPayload] = BookingConfirmed) -> dict[str, Any]:
    return dict(orjson.loads(encode(example_envelope(cls)).value))


def _bytes(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)


# ---- decode errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind", "message"),
    [
        (b"{not json", "malformed_json", "not valid JSON"),
        (b"", "malformed_json", "not valid JSON"),
        (b"[1, 2]", "malformed_envelope", "not a JSON object"),
        (b'{"version": "1.0"}', "malformed_envelope", "no string `type`"),
    ],
)
def test_malformed_messages(value: bytes, kind: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message) as info:
        decode(value)
    assert info.value.kind == kind
    assert isinstance(info.value, ValueError)


def test_missing_event_id_is_rejected() -> None:
    body = _wire()
    del body["event_id"]
    with pytest.raises(DecodeError, match="no event_id"):
        decode(_bytes(body))


def test_tombstone_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="tombstone"):
        decode(None)


def test_unknown_type() -> None:
    body = _wire() | {"type": "BookingTeleported"}
    with pytest.raises(DecodeError, match="unknown event type 'BookingTeleported'") as info:
        decode(_bytes(body))
    assert info.value.kind == "unknown_type"
    assert info.value.event_type == "BookingTeleported"


@pytest.mark.parametrize("version", ["2.0", "0.9", "10.3"])
def test_other_major_version_is_rejected(version: str) -> None:
    body = _wire() | {"version": version}
    with pytest.raises(DecodeError, match="major") as info:
        decode(_bytes(body))
    assert info.value.kind == "unsupported_version"


@pytest.mark.parametrize("version", ["1", "v1.0", "1.0.0", 1.0, None])
def test_malformed_version(version: object) -> None:
    body = _wire() | {"version": version}
    with pytest.raises(DecodeError, match=r"not <major>\.<minor>"):
        decode(_bytes(body))


def test_invalid_payload_names_the_field() -> None:
    body = _wire()
    body["payload"] = body["payload"] | {"slot_start": "tomorrow"}
    with pytest.raises(DecodeError, match=r"BookingConfirmed 1.1 failed validation: .*slot_start"):
        decode(_bytes(body))


def test_naive_time_on_the_wire_is_rejected() -> None:
    body = _wire() | {"occurred_at": "2024-05-01T09:00:00"}
    with pytest.raises(DecodeError, match="occurred_at"):
        decode(_bytes(body))


def test_unknown_envelope_field_is_rejected() -> None:
    body = _wire() | {"tenant": "x"}
    with pytest.raises(DecodeError, match="tenant"):
        decode(_bytes(body))


def test_header_type_must_agree_with_body() -> None:
    message = encode(example_envelope(BookingConfirmed))
    with pytest.raises(DecodeError, match="disagrees"):
        decode(message.value, [("event-type", b"BookingRejected")])
    with pytest.raises(DecodeError, match="content-type"):
        decode(message.value, {"content-type": b"application/avro"})
    assert decode(message.value, {"Content-Type": b"application/json; charset=utf-8"})


# ---- tolerant reader -------------------------------------------------------------------------


def test_newer_minor_with_unknown_fields_is_read_with_our_model() -> None:
    body = _wire()
    body["version"] = "1.7"
    body["payload"] = body["payload"] | {"loyalty_tier": "gold"}
    envelope = decode(_bytes(body))
    assert isinstance(envelope.payload, BookingConfirmed)
    assert not hasattr(envelope.payload, "loyalty_tier")
    assert envelope.version == BookingConfirmed.event_version


# ---- upcasting -------------------------------------------------------------------------------


class _Thing(EventPayload):
    """A test-only event at version 1.2 (not in the real catalog)."""

    event_type: ClassVar[str] = "TestThing"
    event_version: ClassVar[str] = "1.2"
    topic: ClassVar[str] = BOOKING_COMMANDS

    full_name: str
    quantity: int
    unit: str


def _thing_message(version: str, payload: dict[str, Any]) -> bytes:
    return _bytes(
        {
            "event_id": str(uuid.uuid4()),
            "type": "TestThing",
            "version": version,
            "occurred_at": "2024-05-01T01:00:00Z",
            "region": "eu",
            "store_id": "s1",
            "correlation_id": "c",
            "payload": payload,
        }
    )


@pytest.fixture
def upcasters() -> UpcasterRegistry:
    registry = UpcasterRegistry()

    @registry.register("TestThing", "1.0", "1.1")
    def split_name(p: dict[str, Any]) -> dict[str, Any]:
        p["full_name"] = f"{p.pop('first')} {p.pop('last')}"
        return p

    @registry.register("TestThing", "1.1", "1.2")
    def default_unit(p: dict[str, Any]) -> dict[str, Any]:
        return p | {"unit": p.get("unit", "pcs")}

    return registry


CATALOG = {"TestThing": _Thing}


def test_upcaster_chain_from_oldest_version(upcasters: UpcasterRegistry) -> None:
    raw = _thing_message("1.0", {"first": "Ada", "last": "Lovelace", "quantity": 2})
    envelope = decode(raw, catalog=CATALOG, upcasters=upcasters)
    assert envelope.payload == _Thing(full_name="Ada Lovelace", quantity=2, unit="pcs")
    assert envelope.version == "1.2"


def test_upcaster_chain_from_middle_version(upcasters: UpcasterRegistry) -> None:
    raw = _thing_message("1.1", {"full_name": "Ada", "quantity": 1, "unit": "box"})
    assert decode(raw, catalog=CATALOG, upcasters=upcasters).payload == _Thing(
        full_name="Ada", quantity=1, unit="box"
    )


def test_current_version_is_not_upcast(upcasters: UpcasterRegistry) -> None:
    raw = _thing_message("1.2", {"full_name": "Ada", "quantity": 1, "unit": "kg"})
    assert decode(raw, catalog=CATALOG, upcasters=upcasters).payload.model_dump() == {
        "full_name": "Ada",
        "quantity": 1,
        "unit": "kg",
    }


def test_without_upcasters_an_old_payload_fails_validation() -> None:
    raw = _thing_message("1.0", {"first": "Ada", "last": "Lovelace", "quantity": 2})
    with pytest.raises(DecodeError, match="full_name") as info:
        decode(raw, catalog=CATALOG, upcasters=UpcasterRegistry())
    assert info.value.kind == "invalid"


def test_failing_upcaster_is_a_decode_error(upcasters: UpcasterRegistry) -> None:
    raw = _thing_message("1.0", {"quantity": 2})  # no first/last: split_name raises KeyError
    with pytest.raises(DecodeError, match="upcaster failed"):
        decode(raw, catalog=CATALOG, upcasters=upcasters)


def test_upcaster_registration_rules(upcasters: UpcasterRegistry) -> None:
    with pytest.raises(ValueError, match="major"):
        upcasters.register("TestThing", "1.2", "2.0")
    with pytest.raises(ValueError, match="forward"):
        upcasters.register("TestThing", "1.2", "1.1")
    with pytest.raises(ValueError, match="already exists"):
        upcasters.register("TestThing", "1.0", "1.1")(lambda p: p)


# ---- encode ----------------------------------------------------------------------------------


def test_key_override_and_forward_topic() -> None:
    envelope = example_envelope(RequestBooking)
    forwarded = encode(envelope, topic=forward_topic("eu"), key="sh-001")
    assert forwarded.topic == "booking.forward.eu.v1"
    assert forwarded.key == b"sh-001"
    assert encode(envelope, key=b"\x00raw").key == b"\x00raw"
    assert encode_key("店-1") == "店-1".encode()
    assert "traceparent" not in dict(forwarded.headers)
    assert decode(forwarded.value) == envelope


def test_encode_refuses_a_topic_that_does_not_carry_the_type() -> None:
    with pytest.raises(ValueError, match="does not carry FeedbackReceived"):
        encode(example_envelope(FeedbackReceived), topic=BOOKING_COMMANDS)
    with pytest.raises(ValueError, match="unknown topic"):
        encode(example_envelope(FeedbackReceived), topic="feedback.event.v1")


def test_header_value_helper() -> None:
    headers = [("traceparent", b"00-abc"), ("x", None)]
    assert header_value(headers, "TraceParent") == "00-abc"
    assert header_value(headers, "x") is None
    assert header_value(None, "x") is None


# ---- envelope --------------------------------------------------------------------------------


def test_new_envelope_requires_an_aware_time_and_normalises_to_utc() -> None:
    payload = example_payload(CancelBooking)
    shanghai = dt.timezone(dt.timedelta(hours=8))
    env = new_envelope(
        payload,
        region="cn",
        store_id="sh-001",
        correlation_id="c",
        occurred_at=dt.datetime(2024, 5, 1, 9, tzinfo=shanghai),
    )
    assert env.occurred_at == EXAMPLE_TIME
    assert env.occurred_at.tzinfo == dt.UTC
    assert (env.type, env.version) == ("CancelBooking", "1.0")
    with pytest.raises(ValidationError, match="timezone"):
        new_envelope(
            payload,
            region="cn",
            store_id="sh-001",
            correlation_id="c",
            occurred_at=dt.datetime(2024, 5, 1, 9),
        )


def test_envelope_type_must_match_payload() -> None:
    with pytest.raises(ValidationError, match="does not match payload"):
        Envelope(
            type="BookingRejected",
            version="1.0",
            occurred_at=EXAMPLE_TIME,
            region="cn",
            store_id="s",
            correlation_id="c",
            payload=example_payload(BookingConfirmed),
        )


def test_derive_keeps_correlation_and_sets_causation() -> None:
    command = example_envelope(RequestBooking)
    later = EXAMPLE_TIME + dt.timedelta(milliseconds=3)
    event_id = deterministic_event_id(str(command.event_id), "0")
    event = command.derive(example_payload(BookingConfirmed), occurred_at=later, event_id=event_id)
    assert event.correlation_id == command.correlation_id
    assert event.causation_id == str(command.event_id)
    assert (event.region, event.store_id, event.occurred_at) == ("cn", "sh-001", later)
    assert event.event_id == event_id == deterministic_event_id(str(command.event_id), "0")
    assert deterministic_event_id("a", "bc") != deterministic_event_id("ab", "c")


@given(st.lists(st.text(), min_size=1, max_size=4))
def test_deterministic_event_ids_are_the_standard_uuid5(parts: list[str]) -> None:
    """Ids already published must stay the same: it is `uuid.uuid5`, computed faster."""
    namespace = uuid.UUID("6f1d3a52-53c4-4c31-9a3e-0b8f0e4f2a11")
    assert deterministic_event_id(*parts) == uuid.uuid5(namespace, "\x1f".join(parts))


def test_payload_validation_examples() -> None:
    with pytest.raises(ValidationError, match="rating"):
        FeedbackReceived.model_validate(
            example_payload(FeedbackReceived).model_dump() | {"rating": 6}
        )
    confirmed = example_payload(BookingConfirmed).model_dump()
    with pytest.raises(ValidationError, match="unknown IANA time zone"):
        BookingConfirmed.model_validate(confirmed | {"timezone": "Mars/Olympus"})
    with pytest.raises(ValidationError, match="slot_end must be after"):
        BookingConfirmed.model_validate(confirmed | {"slot_end": confirmed["slot_start"]})


def test_opening_hours_accept_weekday_numbers_and_names() -> None:
    from schemas import StoreRegistered

    base = example_payload(StoreRegistered).model_dump()
    hours = {0: [{"open": "09:00", "close": "12:00"}], "Saturday": [], "sun": []}
    store = StoreRegistered.model_validate(base | {"opening_hours": hours})
    assert list(store.opening_hours) == ["mon", "sat", "sun"]
    with pytest.raises(ValidationError, match="given twice"):
        StoreRegistered.model_validate(base | {"opening_hours": {0: [], "mon": []}})
    overlapping = {
        "mon": [{"open": "09:00", "close": "12:00"}, {"open": "11:00", "close": "13:00"}]
    }
    with pytest.raises(ValidationError, match="overlap"):
        StoreRegistered.model_validate(base | {"opening_hours": overlapping})
    with pytest.raises(ValidationError, match="before end"):
        StoreRegistered.model_validate(
            base | {"opening_hours": {"mon": [{"open": "12:00", "close": "09:00"}]}}
        )
