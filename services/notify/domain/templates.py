"""Message templates per locale, store-local time formatting and per-channel length limits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from schemas.events.base import Channel

SUPPORTED_LOCALES = ("zh-CN", "en")
DEFAULT_LOCALE = "en"

# Characters per message a channel takes; longer texts are cut with an ellipsis.
CHANNEL_LIMITS: dict[Channel, int] = {
    Channel.WECHAT: 600,
    Channel.WHATSAPP: 4096,
    Channel.LINE: 5000,
    Channel.PHONE: 320,  # SMS: two concatenated segments
    Channel.FRONT_DESK: 2000,
    Channel.STORE_SYSTEM: 4000,
    Channel.WEB: 10000,  # e-mail
}

_WEEKDAYS = {
    "zh-CN": ("周一", "周二", "周三", "周四", "周五", "周六", "周日"),
    "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
}
_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# (subject, body) per template key and locale. Placeholders: name, when, old_when, exam, store,
# alternatives, summary.
TEMPLATES: dict[str, dict[str, tuple[str, str]]] = {
    "confirmation": {
        "en": ("Booking confirmed", "Hi {name}, your {exam} at {store} is confirmed for {when}."),
        "zh-CN": ("预约成功", "{name}您好，您在{store}的{exam}已预约成功，时间：{when}。"),
    },
    "change": {
        "en": (
            "Booking moved",
            "Hi {name}, your {exam} at {store} has moved from {old_when} to {when}.",
        ),
        "zh-CN": ("预约已改期", "{name}您好，您在{store}的{exam}已由{old_when}改为{when}。"),
    },
    "cancellation.by_customer": {
        "en": ("Booking cancelled", "Hi {name}, your {exam} at {store} on {when} is cancelled."),
        "zh-CN": ("预约已取消", "{name}您好，您在{store}于{when}的{exam}已取消。"),
    },
    "cancellation.by_store": {
        "en": (
            "Booking cancelled by the store",
            "Hi {name}, we are sorry: {store} had to cancel your {exam} on {when}. "
            "Reply to book a new time.",
        ),
        "zh-CN": (
            "门店取消了您的预约",
            "{name}您好，很抱歉，{store}不得不取消您于{when}的{exam}。回复即可重新预约。",
        ),
    },
    "reassignment": {
        "en": (
            "New optometrist",
            "Hi {name}, your {exam} at {store} on {when} stays at the same time with another "
            "optometrist.",
        ),
        "zh-CN": (
            "验光师变更",
            "{name}您好，您在{store}于{when}的{exam}时间不变，将由另一位验光师为您服务。",
        ),
    },
    "displacement": {
        "en": (
            "Please pick a new time",
            "Hi {name}, your {exam} at {store} on {when} can no longer take place. "
            "Free times: {alternatives}. Reply to pick one.",
        ),
        "zh-CN": (
            "请重新选择时间",
            "{name}您好，您在{store}于{when}的{exam}无法如期进行。可选时间：{alternatives}。请回复选择。",
        ),
    },
    "reminder": {
        "en": ("Reminder", "Reminder: your {exam} at {store} is on {when}."),
        "zh-CN": ("预约提醒", "提醒：您在{store}的{exam}时间为{when}。"),
    },
    "exam_result": {
        "en": ("Your exam result", "Hi {name}, your result from {store}: {summary}"),
        "zh-CN": ("检查结果", "{name}您好，您在{store}的检查结果：{summary}"),
    },
    "feedback_request": {
        "en": (
            "How was your visit?",
            "Hi {name}, how was your {exam} at {store}? Reply with a rating from 1 to 5.",
        ),
        "zh-CN": ("请为本次服务评分", "{name}您好，您对在{store}的{exam}满意吗？请回复1-5分。"),
    },
}

_NO_ALTERNATIVES = {"en": "none right now, we will contact you", "zh-CN": "暂无，我们会联系您"}
_DEFAULT_NAME = {"en": "there", "zh-CN": "顾客"}


def resolve_locale(customer_locale: str | None, store_locale: str | None) -> str:
    """The customer's locale if we have templates for it (or its language), else the store's."""
    for candidate in (customer_locale, store_locale):
        if not candidate:
            continue
        if candidate in SUPPORTED_LOCALES:
            return candidate
        language = candidate.split("-")[0].lower()
        for supported in SUPPORTED_LOCALES:
            if supported.split("-")[0].lower() == language:
                return supported
    return DEFAULT_LOCALE


def format_local(instant: dt.datetime, timezone: str, locale: str) -> str:
    """Wall-clock time in the store's zone, the way the locale writes it."""
    local = instant.astimezone(ZoneInfo(timezone))
    weekday = _WEEKDAYS.get(locale, _WEEKDAYS["en"])[local.weekday()]
    if locale == "zh-CN":
        return f"{local.year}年{local.month}月{local.day}日（{weekday}）{local:%H:%M}"
    return f"{weekday} {local.day} {_MONTHS_EN[local.month - 1]} {local.year}, {local:%H:%M}"


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def render(
    template: str,
    locale: str,
    channel: Channel,
    *,
    name: str | None,
    store: str,
    exam: str,
    timezone: str,
    when: dt.datetime | None = None,
    old_when: dt.datetime | None = None,
    alternatives: Sequence[dt.datetime] = (),
    summary: str = "",
) -> tuple[str, str]:
    """(subject, text) for one message, cut to the channel's length limit."""
    subject, body = TEMPLATES[template].get(locale) or TEMPLATES[template][DEFAULT_LOCALE]
    fmt = {
        "name": name or _DEFAULT_NAME.get(locale, _DEFAULT_NAME["en"]),
        "store": store,
        "exam": exam,
        "when": format_local(when, timezone, locale) if when else "",
        "old_when": format_local(old_when, timezone, locale) if old_when else "",
        "alternatives": ("、" if locale == "zh-CN" else "; ").join(
            format_local(a, timezone, locale) for a in alternatives
        )
        or _NO_ALTERNATIVES.get(locale, _NO_ALTERNATIVES["en"]),
        "summary": summary,
    }
    return subject, truncate(body.format(**fmt), CHANNEL_LIMITS.get(channel, 1000))
