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
# alternatives, summary, hold (an offer's hold time), link (always last: never cut), note.
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
    "waitlist_offer": {
        "en": (
            "A slot freed up for you",
            "Hi {name}, a {exam} slot freed up at {store}: {when}. We hold it for you until "
            "{hold}. Accept: {link}",
        ),
        "zh-CN": (
            "候补空位通知",
            "{name}您好，{store}的{exam}有空位了：{when}，为您保留至{hold}。确认预约：{link}",
        ),
    },
    # SMS: two segments at most, the link whole
    "waitlist_offer.sms": {
        "en": ("A slot freed up", "{store}: {exam} {when}, held until {hold}. Accept: {link}"),
        "zh-CN": ("候补空位", "{store}{exam}空位{when}，保留至{hold}。确认：{link}"),
    },
    "offer_taken": {
        "en": (
            "The slot was taken",
            "Hi {name}, sorry: someone else booked the {exam} slot at {store}{at_when} first. "
            "{note}",
        ),
        "zh-CN": (
            "空位已被预约",
            "{name}您好，很抱歉，{store}{at_when}的{exam}空位已被其他顾客预约。{note}",
        ),
    },
    "offer_expired": {
        "en": (
            "Your hold has ended",
            "Hi {name}, the {exam} slot at {store} on {when} we held for you has been released. "
            "You stay on the waitlist.",
        ),
        "zh-CN": (
            "保留已到期",
            "{name}您好，为您保留的{store}{when}的{exam}空位已到期释放。您仍在候补名单中。",
        ),
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
_OTHER_TIMES = {
    "en": "Other free times: {alternatives}.",
    "zh-CN": "其他可选时间：{alternatives}。",
}
_STILL_WAITING = {"en": "You stay on the waitlist.", "zh-CN": "您仍在候补名单中。"}
_AT_WHEN = {"en": " on {when}", "zh-CN": "{when}"}
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


def format_local(instant: dt.datetime, timezone: str | dt.tzinfo, locale: str) -> str:
    """Wall-clock time in the store's zone, the way the locale writes it."""
    local = instant.astimezone(ZoneInfo(timezone) if isinstance(timezone, str) else timezone)
    weekday = _WEEKDAYS.get(locale, _WEEKDAYS["en"])[local.weekday()]
    if locale == "zh-CN":
        return f"{local.year}年{local.month}月{local.day}日（{weekday}）{local:%H:%M}"
    return f"{weekday} {local.day} {_MONTHS_EN[local.month - 1]} {local.year}, {local:%H:%M}"


def format_until(
    until: dt.datetime, since: dt.datetime | None, timezone: str | dt.tzinfo, locale: str
) -> str:
    """A hold's end: just the time when it falls on the same local day as `since`."""
    zone = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
    local = until.astimezone(zone)
    if since is not None and since.astimezone(zone).date() == local.date():
        return f"{local:%H:%M}"
    return format_local(until, zone, locale)


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def template_for(template: str, channel: Channel) -> str:
    """The channel's own variant of a template where there is one (SMS: shorter)."""
    if channel == Channel.PHONE and f"{template}.sms" in TEMPLATES:
        return f"{template}.sms"
    return template


def render(
    template: str,
    locale: str,
    channel: Channel,
    *,
    name: str | None,
    store: str,
    exam: str,
    timezone: str | dt.tzinfo,
    when: dt.datetime | None = None,
    old_when: dt.datetime | None = None,
    alternatives: Sequence[dt.datetime] = (),
    summary: str = "",
    hold_until: dt.datetime | None = None,
    link: str = "",
) -> tuple[str, str]:
    """(subject, text) for one message, cut to the channel's length limit (a link is kept
    whole: the prose before it is cut instead)."""
    template = template_for(template, channel)
    subject, body = TEMPLATES[template].get(locale) or TEMPLATES[template][DEFAULT_LOCALE]
    sep = "、" if locale == "zh-CN" else "; "
    listed = sep.join(format_local(a, timezone, locale) for a in alternatives)
    when_text = format_local(when, timezone, locale) if when else ""
    fmt = {
        "name": name or _DEFAULT_NAME.get(locale, _DEFAULT_NAME["en"]),
        "store": store,
        "exam": exam,
        "when": when_text,
        "old_when": format_local(old_when, timezone, locale) if old_when else "",
        "alternatives": listed or _NO_ALTERNATIVES.get(locale, _NO_ALTERNATIVES["en"]),
        "summary": summary,
        "hold": format_until(hold_until, when, timezone, locale) if hold_until else "",
        "at_when": _localized(_AT_WHEN, locale).format(when=when_text) if when else "",
        "note": (
            _localized(_OTHER_TIMES, locale).format(alternatives=listed)
            if listed
            else _localized(_STILL_WAITING, locale)
        ),
        "link": "",
    }
    limit = CHANNEL_LIMITS.get(channel, 1000)
    text = body.format(**fmt)  # a link goes last, where `{link}` stood
    if not link:
        return subject, truncate(text.rstrip(), limit)
    if len(text) + len(link) > limit:
        text = truncate(text, max(limit - len(link) - 1, 1)) + " "
    return subject, text + link


def _localized(texts: dict[str, str], locale: str) -> str:
    return texts.get(locale) or texts[DEFAULT_LOCALE]
