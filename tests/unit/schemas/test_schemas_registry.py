"""The topic registry: contents per DESIGN §4/§6 and validation of bad registries."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas import (
    AVAILABILITY,
    BOOKING_COMMANDS,
    BOOKING_COMMANDS_DLQ,
    BOOKING_EVENTS,
    BOOKING_EVENTS_DLQ,
    BOOKING_FACTS,
    FEEDBACK_EVENTS,
    MESSAGES_INBOUND,
    MESSAGES_INBOUND_DLQ,
    MESSAGES_ROUTED,
    NOTIFY_DELIVERIES,
    NOTIFY_DLQ,
    ROSTER_EVENTS,
    ROSTER_EVENTS_DLQ,
    RegistryError,
    dlq_topic_for,
    forward_topic,
    load_registry,
    local_topic_name,
    subscription_pattern,
    topic,
    topics_for_scope,
)
from schemas.registry import REGISTRY_PATH, UnknownTopicError, parse_topic_name

DAY_MS = 24 * 3600 * 1000


def test_registry_has_every_design_topic() -> None:
    registry = load_registry()
    expected = {
        ROSTER_EVENTS,
        BOOKING_COMMANDS,
        BOOKING_COMMANDS_DLQ,
        BOOKING_EVENTS,
        BOOKING_EVENTS_DLQ,
        BOOKING_FACTS,
        AVAILABILITY,
        NOTIFY_DELIVERIES,
        NOTIFY_DLQ,
        MESSAGES_INBOUND,
        MESSAGES_INBOUND_DLQ,
        MESSAGES_ROUTED,
        FEEDBACK_EVENTS,
        ROSTER_EVENTS_DLQ,
        "booking.forward.cn.v1",
        "booking.forward.eu.v1",
        "booking.forward.ap.v1",
    }
    assert set(registry) == expected
    for name, spec in registry.items():
        assert spec.name == name
        parse_topic_name(name)


@pytest.mark.parametrize(
    ("name", "partitions", "scope", "pii"),
    [
        (ROSTER_EVENTS, 12, "all-regions", False),
        (BOOKING_COMMANDS, 12, "local", True),
        (BOOKING_EVENTS, 12, "local", True),
        (BOOKING_FACTS, 12, "to-hq", False),
        (AVAILABILITY, 12, "all-regions", False),
        (NOTIFY_DELIVERIES, 6, "local", False),
        (MESSAGES_ROUTED, 6, "local", True),
        (FEEDBACK_EVENTS, 6, "to-hq", False),
        ("booking.forward.eu.v1", 12, "to-home-region", True),
    ],
)
def test_topic_properties(name: str, partitions: int, scope: str, pii: bool) -> None:
    spec = topic(name)
    assert (spec.partitions, spec.scope, spec.pii) == (partitions, scope, pii)


def test_retention_defaults() -> None:
    assert topic(BOOKING_EVENTS).retention_ms == 7 * DAY_MS
    assert topic(BOOKING_FACTS).retention_ms == 30 * DAY_MS
    for spec in load_registry().values():
        if spec.is_dlq:
            assert spec.retention_ms == 14 * DAY_MS, spec.name
            assert spec.scope == "local"
            assert spec.events == ("DeadLetter",)


def test_kafka_config() -> None:
    assert topic(BOOKING_EVENTS).kafka_config() == {
        "cleanup.policy": "delete",
        "retention.ms": str(7 * DAY_MS),
    }
    compact = topic(AVAILABILITY).kafka_config()
    assert compact["cleanup.policy"] == "compact"
    assert "retention.ms" not in compact
    assert int(compact["min.compaction.lag.ms"]) > 0
    assert int(compact["segment.ms"]) > 0
    assert topic(ROSTER_EVENTS).kafka_config()["retention.ms"] == "-1"


def test_forward_topics_per_region() -> None:
    registry = load_registry(["us", "eu"])
    forwards = sorted(n for n in registry if n.startswith("booking.forward."))
    assert forwards == ["booking.forward.eu.v1", "booking.forward.us.v1"]
    spec = registry["booking.forward.us.v1"]
    assert spec.region == "us"
    assert spec.scope == "to-home-region"
    assert "us" in spec.description
    # Commands travel there and decisions come back on the origin region's forward topic.
    assert {"RequestBooking", "AcceptOffer", "BookingConfirmed", "BookingRejected"} <= set(
        spec.events
    )
    assert forward_topic("us") == "booking.forward.us.v1"
    assert topic("booking.forward.us.v1").region == "us"  # any region resolves
    with pytest.raises(RegistryError):
        forward_topic("EU!")
    with pytest.raises(RegistryError, match="sequence of region names"):
        load_registry("eu")
    with pytest.raises(RegistryError, match="duplicate region"):
        load_registry(["eu", "eu"])


def test_unknown_topic_has_a_clear_message() -> None:
    with pytest.raises(KeyError) as info:
        topic("booking.event.v1")
    assert isinstance(info.value, UnknownTopicError)
    assert "unknown topic 'booking.event.v1'" in str(info.value)
    assert "booking.events.v1" in str(info.value)  # suggestion


def test_dlq_and_mirrored_names() -> None:
    assert dlq_topic_for(BOOKING_EVENTS) == BOOKING_EVENTS_DLQ
    assert dlq_topic_for(BOOKING_COMMANDS) == BOOKING_COMMANDS_DLQ
    assert dlq_topic_for("booking.forward.eu.v1") == BOOKING_COMMANDS_DLQ
    assert dlq_topic_for(ROSTER_EVENTS) == ROSTER_EVENTS_DLQ
    assert dlq_topic_for("eu.roster.events.v1") == ROSTER_EVENTS_DLQ  # MirrorMaker 2 copy
    assert dlq_topic_for(MESSAGES_INBOUND) == MESSAGES_INBOUND_DLQ
    with pytest.raises(KeyError, match="no dead-letter topic"):
        dlq_topic_for(BOOKING_FACTS)
    assert local_topic_name("eu.booking.facts.v1") == BOOKING_FACTS
    assert local_topic_name(BOOKING_FACTS) == BOOKING_FACTS
    assert local_topic_name("nope.v1") == "nope.v1"


def test_subscription_pattern_matches_local_and_mirrored() -> None:
    pattern = re.compile(subscription_pattern(BOOKING_FACTS))
    assert pattern.match("booking.facts.v1")
    assert pattern.match("eu.booking.facts.v1")
    assert not pattern.match("booking.facts.v2")
    assert not pattern.match("booking.facts.dlq.v1")
    assert not pattern.match("bookingxfacts.v1")


def test_topics_for_scope() -> None:
    assert [s.name for s in topics_for_scope("to-hq")] == [BOOKING_FACTS, FEEDBACK_EVENTS]
    assert {s.name for s in topics_for_scope("all-regions")} == {ROSTER_EVENTS, AVAILABILITY}
    assert len(topics_for_scope("to-home-region", ["cn", "eu"])) == 2
    with pytest.raises(ValueError, match="unknown scope"):
        topics_for_scope("global")


# ---- validation of bad registries -------------------------------------------------------------

Doc = dict[str, Any]


def _find(doc: Doc, name: str) -> dict[str, Any]:
    return next(t for t in doc["topics"] if t["name"] == name)


def _set(topic_name: str, /, **changes: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        _find(doc, topic_name).update(changes)

    return mutate


def _drop_key(name: str, key: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        del _find(doc, name)[key]

    return mutate


def _duplicate(name: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        doc["topics"].append(copy.deepcopy(_find(doc, name)))

    return mutate


def _unlist(event: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        for t in doc["topics"]:
            if event in t.get("events", []):
                t["events"].remove(event)

    return mutate


BAD_REGISTRIES = {
    "bad name": (_set(BOOKING_FACTS, name="Booking-Facts"), "does not match"),
    "no major": (_set(BOOKING_FACTS, name="booking.facts"), "does not match"),
    "zero partitions": (_set(BOOKING_FACTS, partitions=0), "partitions must be an integer >= 1"),
    "bool partitions": (_set(BOOKING_FACTS, partitions=True), "partitions"),
    "compact with retention": (_set(AVAILABILITY, retention_ms=1000), "must be null"),
    "delete without retention": (_set(BOOKING_FACTS, retention_ms=None), "retention_ms"),
    "bad policy": (_set(BOOKING_FACTS, cleanup_policy="archive"), "cleanup_policy"),
    "bad scope": (_set(BOOKING_FACTS, scope="global"), "scope must be one of"),
    "pii to hq": (_set(BOOKING_EVENTS, scope="to-hq"), "PII must stay in its region"),
    "unknown event": (_set(BOOKING_FACTS, events=["BookingFactz"]), "did you mean 'BookingFact'"),
    "event on wrong topic": (
        _set(FEEDBACK_EVENTS, events=["FeedbackReceived", "BookingFact"]),
        "declares topic 'booking.facts.v1'",
    ),
    "event not listed anywhere": (_unlist("OfferDeclined"), "OfferDeclined is not listed"),
    "unknown key": (_set(BOOKING_FACTS, retention="7d"), "unknown key"),
    "missing key": (_drop_key(BOOKING_FACTS, "partitions"), "missing key"),
    "unknown dlq": (_set(BOOKING_FACTS, dlq="booking.facts.dlq.v1"), "not a registered topic"),
    "dlq is not a dlq": (_set(BOOKING_FACTS, dlq=FEEDBACK_EVENTS), "must be a"),
    "duplicate topic": (_duplicate(BOOKING_FACTS), "duplicate topic"),
    "template without placeholder": (
        _set("booking.forward.{region}.v1", name="booking.forward.v1"),
        "`{region}` exactly once",
    ),
    "template scope": (_set("booking.forward.{region}.v1", scope="local"), "to-home-region"),
    "bad events_from": (
        _set("booking.forward.{region}.v1", events_from=["booking.command.v1"]),
        "events_from",
    ),
    "no events": (_set(BOOKING_FACTS, events=[]), "at least one event type"),
}


@pytest.mark.parametrize("case", sorted(BAD_REGISTRIES))
def test_bad_registry_is_rejected(case: str, tmp_path: Path) -> None:
    mutate, message = BAD_REGISTRIES[case]
    doc = yaml.safe_load(REGISTRY_PATH.read_text())
    mutate(doc)
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump(doc))

    with pytest.raises(RegistryError, match=re.escape(message)):
        load_registry(path=path)


def test_unchanged_copy_loads(tmp_path: Path) -> None:
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump(yaml.safe_load(REGISTRY_PATH.read_text())))
    assert load_registry(path=path) == load_registry()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("topics: [\n", "not valid YAML"),
        ("- a\n- b\n", "must be a mapping with a `topics:` list"),
        ("topics:\n  - just-a-string\n", "each topic must be a mapping"),
    ],
)
def test_malformed_registry_files(text: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "topics.yaml"
    path.write_text(text)
    with pytest.raises(RegistryError, match=re.escape(message)):
        load_registry(path=path)


def test_missing_registry_file(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot read"):
        load_registry(path=tmp_path / "absent.yaml")
