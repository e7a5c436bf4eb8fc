"""Base class and shared field types for every event payload.

Payloads are *tolerant readers*: unknown fields (added by a newer minor version of the producer)
are ignored instead of rejected, so consumers can be upgraded after producers.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import Annotated, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

__all__ = [
    "Actor",
    "Channel",
    "EventPayload",
    "Id",
    "IdempotencyKey",
    "LocalTime",
    "Locale",
    "PayloadModel",
    "RejectionReason",
    "Timezone",
    "UtcDatetime",
    "check_local_interval",
    "local_iso",
]


def _to_utc(value: dt.datetime) -> dt.datetime:
    # Wire times are UTC; normalising here means equal instants compare and serialise equally.
    return value.astimezone(dt.UTC)


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {value!r}") from exc
    return value


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""An offset-aware instant, normalised to UTC. Naive datetimes are rejected."""

Timezone = Annotated[str, AfterValidator(_check_timezone), Field(examples=["Asia/Shanghai"])]
"""An IANA time zone name that zoneinfo knows (e.g. ``Europe/Berlin``)."""

LocalTime = Annotated[str, Field(pattern=r"^(?:[01]\d|2[0-3]):[0-5]\d$", examples=["09:30"])]
"""A store-local wall-clock time ``HH:MM`` (24 h). Zero padded, so strings sort like times."""

Locale = Annotated[str, Field(pattern=r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$", examples=["zh-CN"])]
"""A BCP 47 language tag such as ``en`` or ``zh-CN``."""

Id = Annotated[str, Field(min_length=1, max_length=128)]
"""An opaque identifier (booking, store, optometrist, ...)."""

IdempotencyKey = Annotated[str, Field(min_length=1, max_length=256)]
"""The ``Idempotency-Key`` header or the channel's message id."""

# The days and instants a request may name. At the ends of Python's range (years 1 and 9999)
# a store-local day converted to UTC, or the day after it, overflows: refused as 422 instead.
FIRST_REQUEST_DAY = dt.date(2000, 1, 1)
END_REQUEST_DAY = dt.date(3000, 1, 1)  # exclusive
FIRST_REQUEST_INSTANT = dt.datetime.combine(FIRST_REQUEST_DAY, dt.time(), tzinfo=dt.UTC)
END_REQUEST_INSTANT = dt.datetime.combine(END_REQUEST_DAY, dt.time(), tzinfo=dt.UTC)

# What a request may write for a day and an instant. Pydantic alone also takes a number as
# Unix seconds or milliseconds (by its size), so a client's unit mistake became a booking at
# another time, and it cuts digits below the microsecond off rather than refusing them.
_DAY_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INSTANT_TEXT = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.(\d+))?)?(?:[Zz]|[+-]\d{2}:\d{2})$"
)


def day_text(value: object) -> object:
    """A request's day: `YYYY-MM-DD` text (or a date, from code)."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and _DAY_TEXT.match(value):
        return value
    raise ValueError("expected a date as YYYY-MM-DD")


def instant_text(value: object) -> object:
    """A request's instant: RFC 3339 text with an offset (or a datetime, from code), to the
    microsecond at most."""
    if isinstance(value, dt.datetime):
        return value
    match = _INSTANT_TEXT.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(
            "expected an RFC 3339 date-time with an offset, e.g. 2026-03-30T09:30:00+02:00"
        )
    if (match.group(1) or "")[6:].strip("0"):
        raise ValueError("times are precise to the microsecond at most")
    return value


RequestDay = Annotated[
    dt.date, BeforeValidator(day_text), Field(ge=FIRST_REQUEST_DAY, lt=END_REQUEST_DAY)
]
"""A day a request may name (2000-01-01 up to 2999-12-31), written YYYY-MM-DD."""

RequestInstant = Annotated[
    AwareDatetime,
    BeforeValidator(instant_text),
    Field(ge=FIRST_REQUEST_INSTANT, lt=END_REQUEST_INSTANT),
]
"""An offset-aware instant a request may name (from 2000 up to the end of 2999, UTC), written
in RFC 3339."""

_LOCAL_TIME_RE = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$")


def local_iso(instant: dt.datetime, timezone: str) -> str:
    """Store-local ISO 8601 rendering with offset, e.g. ``2024-05-01T17:00:00+08:00``."""
    return instant.astimezone(ZoneInfo(timezone)).isoformat()


class Channel(StrEnum):
    """Where a customer interaction came from (and where replies go)."""

    WECHAT = "wechat"
    WHATSAPP = "whatsapp"
    LINE = "line"
    PHONE = "phone"
    FRONT_DESK = "front_desk"
    STORE_SYSTEM = "store_system"
    WEB = "web"


class Actor(StrEnum):
    """Who cancelled: the customer or the store."""

    CUSTOMER = "customer"
    STORE = "store"


class RejectionReason(StrEnum):
    """Stable reason codes for rejected commands (also HTTP problem ``code`` values)."""

    SLOT_TAKEN = "slot_taken"
    NO_SHIFT = "no_shift"
    NO_SKILL = "no_skill"
    OUTSIDE_HOURS = "outside_hours"
    NOT_ON_GRID = "not_on_grid"
    IN_PAST = "in_past"
    UNKNOWN_STORE = "unknown_store"
    UNKNOWN_EXAM_TYPE = "unknown_exam_type"
    UNKNOWN_BOOKING = "unknown_booking"
    UNKNOWN_OFFER = "unknown_offer"
    DUPLICATE = "duplicate"
    INVALID_TRANSITION = "invalid_transition"
    OFFER_EXPIRED = "offer_expired"
    OFFER_TAKEN = "offer_taken"
    HELD = "held"
    NOT_HOME_REGION = "not_home_region"
    INVALID_COMMAND = "invalid_command"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"  # the key of another request (24 h)
    INTERNAL_ERROR = "internal_error"  # the processor failed on it: dead-lettered
    WAITLIST_FULL = "waitlist_full"  # the store's (or the customer's) waiting entries at their cap


class PayloadModel(BaseModel):
    """Base for nested value objects inside payloads: immutable, tolerant of unknown fields."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class EventPayload(PayloadModel):
    """Base class of every event/command payload carried in an ``Envelope``.

    Concrete subclasses set the ClassVars; the catalog picks up every subclass that defines
    ``event_type`` in its own body. ``event_type`` is spelled out (not derived from the class
    name) so renaming a class can never change the wire format.
    """

    event_type: ClassVar[str]
    event_version: ClassVar[str] = "1.0"
    topic: ClassVar[str]

    def message_key(self, store_id: str) -> bytes | None:
        """Kafka key for this payload; stores are never split, so the default is the store id."""
        return store_id.encode()

    def default_topic(self) -> str:
        """Topic this payload is produced to unless the producer overrides it."""
        return self.topic


def check_local_interval(start: str, end: str, what: str) -> None:
    """Raise ValueError unless ``start < end`` (``HH:MM`` strings compare like times)."""
    if not (_LOCAL_TIME_RE.match(start) and _LOCAL_TIME_RE.match(end)):
        return  # the field pattern reports malformed values more precisely
    if start >= end:
        raise ValueError(f"{what}: start {start} must be before end {end}")
