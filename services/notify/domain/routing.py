"""Keyword routing of inbound customer messages to a staff role, and rating replies."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from schemas.events.messages import StaffRole


@dataclass(frozen=True)
class RoutingRule:
    rule_id: str
    locale: str  # "*" matches every locale
    keywords: tuple[str, ...]
    role: StaffRole
    priority: int = 100  # lower wins when several rules match


@dataclass(frozen=True)
class Route:
    role: StaffRole
    rule_id: str | None = None
    keyword: str | None = None


DEFAULT_RULES: tuple[RoutingRule, ...] = (
    RoutingRule("zh-dilation", "zh-CN", ("散瞳", "扩瞳", "眼底"), StaffRole.OPTOMETRIST, 10),
    RoutingRule("zh-contact-lens", "zh-CN", ("隐形", "角膜塑形", "OK镜"),
                StaffRole.CONTACT_LENS_SPECIALIST, 20),
    RoutingRule("zh-price", "zh-CN", ("价格", "多少钱", "费用", "收费"), StaffRole.FRONT_DESK, 30),
    RoutingRule("en-dilation", "en", ("dilation", "dilate", "eye drops", "retina"),
                StaffRole.OPTOMETRIST, 10),
    RoutingRule("en-contact-lens", "en", ("contact lens", "contacts", "ortho-k"),
                StaffRole.CONTACT_LENS_SPECIALIST, 20),
    RoutingRule("en-price", "en", ("price", "cost", "how much", "fee"), StaffRole.FRONT_DESK, 30),
)  # fmt: skip


def normalise(text: str) -> str:
    # NFKC folds full-width letters and digits (common in CJK input) into their ASCII forms.
    return unicodedata.normalize("NFKC", text).casefold()


def _locale_matches(rule_locale: str, locale: str) -> bool:
    if rule_locale == "*":
        return True
    return normalise(rule_locale).split("-")[0] == normalise(locale).split("-")[0]


def route(text: str, locale: str, rules: Iterable[RoutingRule]) -> Route:
    """The best matching rule of the message's locale (then of any locale), else front desk."""
    body = normalise(text)
    ordered = sorted(rules, key=lambda r: (0 if r.locale != "*" else 1, r.priority, r.rule_id))
    for candidates in (
        [r for r in ordered if _locale_matches(r.locale, locale)],
        ordered,  # a Chinese keyword in an "en" conversation still means what it means
    ):
        for rule in candidates:
            for keyword in rule.keywords:
                if keyword and normalise(keyword) in body:
                    return Route(rule.role, rule.rule_id, keyword)
    return Route(StaffRole.FRONT_DESK)


_RATING = re.compile(r"^\s*([1-5])(?!\d)\s*(?:分|星|stars?|/\s*5)?\s*[.!。！]?\s*(.*)$", re.S)


def parse_rating(text: str) -> tuple[int, bool] | None:
    """(rating, has_comment) when the message is a 1-5 rating reply, else None."""
    match = _RATING.match(unicodedata.normalize("NFKC", text))
    if match is None:
        return None
    return int(match[1]), bool(match[2].strip())


def validate_rules(rules: Sequence[RoutingRule]) -> None:
    ids = [r.rule_id for r in rules]
    if len(ids) != len(set(ids)):
        raise ValueError("rule ids must be unique")
