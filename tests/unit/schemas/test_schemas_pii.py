"""Data residency (DESIGN §6): nothing that leaves the region may carry personal data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from schemas import EVENT_TYPES, EventPayload, load_registry
from schemas.events import availability, facts, feedback

FORBIDDEN = ("name", "phone", "chat_id", "customer", "text", "comment_text", "email")


def _property_names(schema: Any) -> Iterator[str]:
    """Every property name anywhere in a JSON Schema (root, nested objects, $defs)."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "properties" and isinstance(value, dict):
                yield from value
            yield from _property_names(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _property_names(item)


def _offending(cls: type[EventPayload]) -> list[str]:
    names = set(_property_names(cls.model_json_schema()))
    return sorted(n for n in names if any(word in n.lower() for word in FORBIDDEN))


PII_FREE_MODULES = (facts, feedback, availability)
PII_FREE_MODELS = sorted(
    (c for c in EVENT_TYPES.values() if any(c.__module__ == m.__name__ for m in PII_FREE_MODULES)),
    key=lambda c: c.event_type,
)


def test_the_pii_free_modules_define_models() -> None:
    assert {c.event_type for c in PII_FREE_MODELS} >= {
        "BookingFact",
        "AvailabilityViewed",
        "FeedbackReceived",
        "StoreDayAvailability",
    }


@pytest.mark.parametrize("cls", PII_FREE_MODELS, ids=lambda c: c.event_type)
def test_no_personal_data_fields(cls: type[EventPayload]) -> None:
    assert _offending(cls) == []


def test_every_topic_leaving_the_region_to_hq_is_pii_free() -> None:
    for spec in load_registry().values():
        if spec.scope == "to-hq":
            assert not spec.pii, spec.name
            for event in spec.events:
                assert _offending(EVENT_TYPES[event]) == [], (spec.name, event)


def test_the_check_would_catch_a_customer_field() -> None:
    from schemas import BookingConfirmed

    assert "customer" in _offending(BookingConfirmed)
    assert "name" in _offending(BookingConfirmed)  # nested inside Customer
