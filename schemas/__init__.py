"""OptiSync event contract: envelope, event payloads, topic registry and the one serde.

from schemas import RequestBooking, new_envelope, encode, decode, BOOKING_COMMANDS
"""

from schemas.registry import (
    AVAILABILITY,
    BOOKING_COMMANDS,
    BOOKING_COMMANDS_DLQ,
    BOOKING_EVENTS,
    BOOKING_EVENTS_DLQ,
    BOOKING_FACTS,
    BOOKING_FORWARD_TEMPLATE,
    DEFAULT_REGIONS,
    FEEDBACK_EVENTS,
    MESSAGES_INBOUND,
    MESSAGES_INBOUND_DLQ,
    MESSAGES_ROUTED,
    NOTIFY_DELIVERIES,
    NOTIFY_DLQ,
    ROSTER_EVENTS,
    ROSTER_EVENTS_DLQ,
    RegistryError,
    TopicSpec,
    UnknownTopicError,
    dlq_topic_for,
    forward_topic,
    load_registry,
    local_topic_name,
    subscription_pattern,
    topic,
    topics_for_scope,
)

# isort: split
from schemas.catalog import EVENT_TYPES, event_types_for_topic, payload_class
from schemas.compat import Incompatibility, check_backward_compatible
from schemas.envelope import Envelope, deterministic_event_id, new_envelope
from schemas.events import *  # noqa: F403  # the payload models are part of the public API
from schemas.events import __all__ as _event_names
from schemas.serde import (
    UPCASTERS,
    DecodeError,
    EncodedMessage,
    UpcasterRegistry,
    decode,
    encode,
    encode_key,
    header_value,
    register_upcaster,
)

__all__ = [
    "AVAILABILITY",
    "BOOKING_COMMANDS",
    "BOOKING_COMMANDS_DLQ",
    "BOOKING_EVENTS",
    "BOOKING_EVENTS_DLQ",
    "BOOKING_FACTS",
    "BOOKING_FORWARD_TEMPLATE",
    "DEFAULT_REGIONS",
    "EVENT_TYPES",
    "FEEDBACK_EVENTS",
    "MESSAGES_INBOUND",
    "MESSAGES_INBOUND_DLQ",
    "MESSAGES_ROUTED",
    "NOTIFY_DELIVERIES",
    "NOTIFY_DLQ",
    "ROSTER_EVENTS",
    "ROSTER_EVENTS_DLQ",
    "UPCASTERS",
    "DecodeError",
    "EncodedMessage",
    "Envelope",
    "Incompatibility",
    "RegistryError",
    "TopicSpec",
    "UnknownTopicError",
    "UpcasterRegistry",
    "check_backward_compatible",
    "decode",
    "deterministic_event_id",
    "dlq_topic_for",
    "encode",
    "encode_key",
    "event_types_for_topic",
    "forward_topic",
    "header_value",
    "load_registry",
    "local_topic_name",
    "new_envelope",
    "payload_class",
    "register_upcaster",
    "subscription_pattern",
    "topic",
    "topics_for_scope",
    *_event_names,
]
