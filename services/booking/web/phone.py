"""Phone numbers typed by customers -> E.164 (`+<country><number>`). Pure.

Chinese mobile numbers may be typed without the country code (11 digits starting 13-19);
everything else needs its `+` (or `00`) country prefix, since a bare national number is
ambiguous across the chain's countries."""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s\-().\u00a0\u3000]")
_CN_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_E164 = re.compile(r"^\+[1-9]\d{7,14}$")


class InvalidPhone(ValueError):
    pass


def normalize_phone(raw: str) -> str:
    text = _SEPARATORS.sub("", raw.strip().translate(_FULLWIDTH))
    if not text:
        raise InvalidPhone("empty")
    if text.startswith("00"):
        text = "+" + text[2:]
    if not text.startswith("+"):
        if _CN_MOBILE.match(text):
            return "+86" + text
        raise InvalidPhone("add the country code, e.g. +86 or +49")
    if not _E164.match(text):
        raise InvalidPhone("not a phone number")
    if text.startswith("+86") and not _CN_MOBILE.match(text[3:]):
        raise InvalidPhone("not a Chinese mobile number")
    return text


# Full-width digits and plus, as typed with a Chinese input method.
_FULLWIDTH = str.maketrans("０１２３４５６７８９＋", "0123456789+")
