"""Unguessable, expiring links: HMAC-SHA256 over the booking id, customer ref and expiry with
the booking service's signing secret. Pure: the secret and the time are passed in."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass

_SEP = "\x1f"  # cannot occur in ids sent over HTTP paths/JSON we accept


class InvalidToken(ValueError):
    """Tampered, malformed or for another purpose."""


class ExpiredToken(ValueError):
    """Well signed but past its expiry."""


@dataclass(frozen=True)
class ManageGrant:
    booking_id: str
    customer_ref: str
    expires_at: dt.datetime


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidToken("malformed token") from exc


def _mac(secret: bytes, purpose: str, body: bytes) -> bytes:
    return hmac.new(secret, purpose.encode() + b":" + body, hashlib.sha256).digest()[:20]


def sign(secret: bytes, purpose: str, fields: list[str]) -> str:
    body = _SEP.join(fields).encode()
    return f"{_b64(body)}.{_b64(_mac(secret, purpose, body))}"


def verify(secret: bytes, purpose: str, token: str, count: int) -> list[str]:
    """The signed fields; InvalidToken unless the MAC matches and there are `count` of them."""
    body_part, _, mac_part = token.partition(".")
    if not body_part or not mac_part or len(token) > 1024:
        raise InvalidToken("malformed token")
    body, mac = _unb64(body_part), _unb64(mac_part)
    if not hmac.compare_digest(mac, _mac(secret, purpose, body)):
        raise InvalidToken("bad signature")
    try:
        fields = body.decode().split(_SEP)
    except UnicodeDecodeError as exc:
        raise InvalidToken("malformed token") from exc
    if len(fields) != count:
        raise InvalidToken("malformed token")
    return fields


def manage_token(secret: bytes, booking_id: str, customer_ref: str, expires_at: dt.datetime) -> str:
    return sign(secret, "manage", [booking_id, customer_ref, str(int(expires_at.timestamp()))])


def read_manage_token(secret: bytes, token: str, now: dt.datetime) -> ManageGrant:
    booking_id, customer_ref, expiry = verify(secret, "manage", token, 3)
    try:
        expires_at = dt.datetime.fromtimestamp(int(expiry), dt.UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidToken("malformed expiry") from exc
    if expires_at <= now:
        raise ExpiredToken("this link has expired")
    return ManageGrant(booking_id, customer_ref, expires_at)


def feed_token(secret: bytes, optometrist_id: str) -> str:
    """A subscribable calendar feed URL must work for months without a login: no expiry, but
    only whoever holds the link (staff) can read it."""
    return sign(secret, "optometrist-feed", [optometrist_id])


def read_feed_token(secret: bytes, token: str) -> str:
    return verify(secret, "optometrist-feed", token, 1)[0]
