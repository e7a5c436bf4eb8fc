"""The one serialisation path for every producer and consumer.

Wire format: the envelope as compact JSON (orjson), UTC times, Kafka headers for content type,
event type/version and W3C trace context. Decoding resolves the payload class from ``type``
and upgrades old payloads with registered upcasters (in the style of the ``eventsourcing``
library), so consumer code only ever sees the current model version.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson
from pydantic import ValidationError

from schemas.catalog import EVENT_TYPES
from schemas.envelope import Envelope
from schemas.events.base import EventPayload
from schemas.registry import UnknownTopicError
from schemas.registry import topic as topic_spec

__all__ = [
    "CONTENT_TYPE",
    "UPCASTERS",
    "DecodeError",
    "EncodedMessage",
    "Headers",
    "UpcasterRegistry",
    "decode",
    "encode",
    "encode_key",
    "header_value",
    "register_upcaster",
]

CONTENT_TYPE: Final = "application/json"
H_CONTENT_TYPE: Final = "content-type"
H_EVENT_TYPE: Final = "event-type"
H_EVENT_VERSION: Final = "event-version"
H_TRACEPARENT: Final = "traceparent"

Headers = Iterable[tuple[str, bytes | None]] | Mapping[str, bytes | None]
"""Kafka headers as aiokafka gives them (pairs) or as a mapping."""

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
DecodeErrorKind = Literal[
    "malformed_json", "malformed_envelope", "unknown_type", "unsupported_version", "invalid"
]


class DecodeError(ValueError):
    """A message that cannot be turned into an Envelope. ``kind`` is stable (for metrics/DLQ)."""

    def __init__(self, kind: DecodeErrorKind, message: str, event_type: str | None = None) -> None:
        super().__init__(message)
        self.kind: DecodeErrorKind = kind
        self.event_type = event_type


@dataclass(frozen=True, slots=True)
class EncodedMessage:
    """What to hand to the Kafka producer: ``send(topic, value, key=key, headers=headers)``."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


_VERSION_RE: Final = re.compile(r"^([0-9]+)\.([0-9]+)$")


def _parse_version(version: str) -> tuple[int, int]:
    m = _VERSION_RE.match(version)
    if m is None:
        raise ValueError(f"version {version!r} is not <major>.<minor>")
    return int(m[1]), int(m[2])


def _try_parse_version(version: object) -> tuple[int, int] | None:
    if isinstance(version, str) and _VERSION_RE.match(version):
        return _parse_version(version)
    return None


class UpcasterRegistry:
    """Upcasters per (event type, from version): raw payload dict -> dict of the next version."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, str], tuple[str, Upcaster]] = {}

    def register(
        self, event_type: str, from_version: str, to_version: str
    ) -> Callable[[Upcaster], Upcaster]:
        """Decorator: ``@register_upcaster("BookingConfirmed", "1.0", "1.1")``.

        Steps stay within one major version (a breaking change is a new topic) and go forward.
        """
        old, new = _parse_version(from_version), _parse_version(to_version)
        if old[0] != new[0]:
            raise ValueError("upcasters cannot cross a major version: that needs a new topic")
        if new <= old:
            raise ValueError(f"upcaster must go forward, got {from_version} -> {to_version}")

        def decorator(fn: Upcaster) -> Upcaster:
            step = (event_type, from_version)
            if step in self._steps:
                raise ValueError(f"an upcaster for {event_type} {from_version} already exists")
            self._steps[step] = (to_version, fn)
            return fn

        return decorator

    def upcast(
        self, event_type: str, version: str, payload: dict[str, Any], target: str
    ) -> tuple[str, dict[str, Any]]:
        """Apply the chain from ``version`` towards ``target``; returns (version, payload).

        A missing step is not an error: minor versions only add optional fields, so a payload
        without an upcaster for the gap still validates against the newer model.
        """
        target_v = _parse_version(target)
        while _parse_version(version) < target_v:
            step = self._steps.get((event_type, version))
            if step is None:
                break
            to_version, fn = step
            if _parse_version(to_version) > target_v:
                break  # never upcast past the version this process understands
            payload = fn(dict(payload))
            if not isinstance(payload, dict):
                raise TypeError(f"upcaster {fn.__qualname__} returned {type(payload).__name__}")
            version = to_version
        return version, payload


UPCASTERS: Final = UpcasterRegistry()
"""The process-wide upcasters ``decode`` uses by default."""

register_upcaster = UPCASTERS.register


def encode_key(key: str) -> bytes:
    return key.encode()


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_UTC_Z)


def encode(
    envelope: Envelope[Any],
    *,
    trace_parent: str | None = None,
    key: str | bytes | None = None,
    topic: str | None = None,
) -> EncodedMessage:
    """Serialise an envelope for producing.

    ``topic`` defaults to the payload's topic (for dead letters: the original topic's DLQ);
    pass ``forward_topic(home)`` to forward a command. ``key`` defaults to the payload's key
    (usually ``store_id``). Raises ValueError if the topic does not carry this event type.
    """
    payload: EventPayload = envelope.payload
    target = topic if topic is not None else payload.default_topic()
    try:
        spec = topic_spec(target)
    except UnknownTopicError as exc:
        raise ValueError(str(exc)) from None
    if envelope.type not in spec.events:
        raise ValueError(f"topic {target!r} does not carry {envelope.type} (schemas/topics.yaml)")
    if key is None:
        raw_key = payload.message_key(envelope.store_id)
    else:
        raw_key = key.encode() if isinstance(key, str) else key
    # mode="json" turns every value (enums, dates, UUIDs) into JSON types exactly as the
    # exported JSON Schema describes them; orjson then writes compact bytes.
    value = _dumps(envelope.model_dump(mode="json"))
    headers = [
        (H_CONTENT_TYPE, CONTENT_TYPE.encode()),
        (H_EVENT_TYPE, envelope.type.encode()),
        (H_EVENT_VERSION, envelope.version.encode()),
    ]
    if trace_parent is not None:
        headers.append((H_TRACEPARENT, trace_parent.encode()))
    return EncodedMessage(topic=target, key=raw_key, value=value, headers=headers)


def header_value(headers: Headers | None, name: str) -> str | None:
    """First header ``name`` (case-insensitive) as text, or None."""
    if headers is None:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    wanted = name.lower()
    for key, value in pairs:
        if key.lower() == wanted and value is not None:
            return value.decode("utf-8", errors="replace")
    return None


_ENVELOPE_TYPES: dict[type[EventPayload], type[Envelope[Any]]] = {}


def _envelope_class(cls: type[EventPayload]) -> type[Envelope[Any]]:
    # Parametrising a generic pydantic model builds a validator; do it once per payload class.
    env = _ENVELOPE_TYPES.get(cls)
    if env is None:
        env = _ENVELOPE_TYPES[cls] = Envelope[cls]  # type: ignore[valid-type]
    return env


def _summarise(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def decode(
    value: bytes | None,
    headers: Headers | None = None,
    *,
    catalog: Mapping[str, type[EventPayload]] | None = None,
    upcasters: UpcasterRegistry | None = None,
) -> Envelope[EventPayload]:
    """Parse a message value into an ``Envelope`` with the current payload model.

    The body is authoritative; headers are only cross-checked. Newer minor versions are read
    with this process's model (unknown fields ignored) and the envelope ``version`` then states
    the version the payload was read as. Raises DecodeError.
    """
    types = EVENT_TYPES if catalog is None else catalog
    steps = UPCASTERS if upcasters is None else upcasters
    if value is None:
        raise DecodeError("malformed_json", "empty message value (tombstone?)")
    content_type = header_value(headers, H_CONTENT_TYPE)
    if content_type is not None and content_type.split(";")[0].strip() != CONTENT_TYPE:
        raise DecodeError("malformed_json", f"unsupported content-type {content_type!r}")
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("malformed_json", f"message is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise DecodeError("malformed_envelope", "message is not a JSON object")

    type_name = raw.get("type")
    if not isinstance(type_name, str):
        raise DecodeError("malformed_envelope", "envelope has no string `type`")
    if "event_id" not in raw:  # else the model default would invent one and defeat de-duplication
        raise DecodeError("malformed_envelope", f"{type_name}: envelope has no event_id", type_name)
    header_type = header_value(headers, H_EVENT_TYPE)
    if header_type is not None and header_type != type_name:
        raise DecodeError(
            "malformed_envelope",
            f"event-type header {header_type!r} disagrees with body type {type_name!r}",
            type_name,
        )
    cls = types.get(type_name)
    if cls is None:
        raise DecodeError("unknown_type", f"unknown event type {type_name!r}", type_name)

    version = raw.get("version")
    wire_v = _try_parse_version(version)
    if not isinstance(version, str) or wire_v is None:
        raise DecodeError(
            "malformed_envelope",
            f"{type_name}: version {version!r} is not <major>.<minor>",
            type_name,
        )
    ours = cls.event_version
    if wire_v[0] != _parse_version(ours)[0]:
        raise DecodeError(
            "unsupported_version",
            f"{type_name} version {version} has major {wire_v[0]}, this reader supports {ours} "
            "(a breaking change must use a new major topic)",
            type_name,
        )
    payload = raw.get("payload")
    if not isinstance(payload, dict):
        raise DecodeError(
            "malformed_envelope", f"{type_name}: payload is not a JSON object", type_name
        )
    if wire_v < _parse_version(ours):
        try:
            _, payload = steps.upcast(type_name, version, payload, ours)
        except Exception as exc:  # an upcaster bug must surface as a decode failure (-> DLQ)
            raise DecodeError(
                "invalid", f"{type_name} {version}: upcaster failed: {exc!r}", type_name
            ) from exc
    # The envelope now describes the object the consumer holds: the current model version.
    raw = {**raw, "payload": payload, "version": ours}
    try:
        return _envelope_class(cls).model_validate(raw)
    except ValidationError as exc:
        raise DecodeError(
            "invalid", f"{type_name} {version} failed validation: {_summarise(exc)}", type_name
        ) from None
