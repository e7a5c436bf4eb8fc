"""Event catalog: every concrete payload class by its wire ``type`` name."""

from __future__ import annotations

import schemas.events  # noqa: F401  # imports every domain module so the subclasses exist
from schemas.events.base import EventPayload

__all__ = ["EVENT_TYPES", "event_types_for_topic", "payload_class"]


def _concrete_subclasses(base: type[EventPayload]) -> list[type[EventPayload]]:
    found: list[type[EventPayload]] = []
    for sub in base.__subclasses__():
        # Only classes that name their own type are events; intermediate bases are not.
        # Restricting to this package keeps test-local subclasses out of the catalog.
        if "event_type" in sub.__dict__ and sub.__module__.startswith("schemas.events."):
            found.append(sub)
        found.extend(_concrete_subclasses(sub))
    return found


def _build() -> dict[str, type[EventPayload]]:
    catalog: dict[str, type[EventPayload]] = {}
    for cls in _concrete_subclasses(EventPayload):
        other = catalog.get(cls.event_type)
        if other is not None and other is not cls:
            raise TypeError(
                f"event type {cls.event_type!r} is defined twice: "
                f"{other.__module__}.{other.__qualname__} and {cls.__module__}.{cls.__qualname__}"
            )
        catalog[cls.event_type] = cls
    return dict(sorted(catalog.items()))


EVENT_TYPES: dict[str, type[EventPayload]] = _build()
"""``type name -> payload class``, sorted by name. Treat as read-only."""


def payload_class(type_name: str) -> type[EventPayload]:
    """The payload class for a wire ``type``; KeyError with the known names otherwise."""
    try:
        return EVENT_TYPES[type_name]
    except KeyError:
        raise KeyError(f"unknown event type {type_name!r}") from None


def event_types_for_topic(topic_name: str) -> list[type[EventPayload]]:
    """Payload classes whose home topic is ``topic_name`` (see also TopicSpec.events)."""
    return [cls for cls in EVENT_TYPES.values() if cls.topic == topic_name]
