"""Signed webhooks: `t=<unix>,v1=<hex hmac-sha256(secret, "<t>.<body>")>`, both directions."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-OptiSync-Signature"


class SignatureError(ValueError):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def parse(header: str | None) -> tuple[int, list[str]]:
    if not header:
        raise SignatureError("signature_missing", f"the {SIGNATURE_HEADER} header is required")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureError("signature_malformed", "expected t=<unix seconds>,v1=<hex>")
    return timestamp, signatures


def verify(secret: str, header: str | None, body: bytes, *, now: float, max_skew_s: int) -> str:
    """The matching v1 signature (the replay-protection key), else SignatureError."""
    timestamp, signatures = parse(header)
    if abs(now - timestamp) > max_skew_s:
        raise SignatureError("signature_expired", f"timestamp is more than {max_skew_s}s off")
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    for candidate in signatures:
        if hmac.compare_digest(candidate, expected):
            return candidate
    raise SignatureError("signature_invalid", "the signature does not match the body")


def staff_token(secret: str, staff_id: str) -> str:
    """A bearer token `<staff_id>.<hmac>` for staff-only endpoints (issued by the staff
    console; here derived from the service's signing secret)."""
    mac = hmac.new(secret.encode(), f"staff:{staff_id}".encode(), hashlib.sha256).hexdigest()
    return f"{staff_id}.{mac[:32]}"


def staff_of_token(secret: str, token: str) -> str | None:
    staff_id, _, _ = token.rpartition(".")
    if staff_id and hmac.compare_digest(staff_token(secret, staff_id), token):
        return staff_id
    return None
