"""The page language (zh-CN or en) and the few texts the server renders itself; the pages'
other texts live in static/common.js."""

from __future__ import annotations

LOCALES = ("zh-CN", "en")

_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "book_title": "Book an eye exam",
        "manage_title": "Your booking",
        "console_title": "Front desk",
        "optometrist_title": "My day",
        "offer_title": "A slot for you",
        "error_title": "Sorry",
        "link_invalid": "This link is not valid. Please use the link from your confirmation "
        "message, or book again.",
        "link_expired": "This link has expired. Please book again or contact the store.",
        "booking_not_ready": "Your booking is being prepared. Please reload this page in a moment.",
        "unknown_store": "There is no such store.",
        "unknown_optometrist": "There is no such optometrist.",
    },
    "zh-CN": {
        "book_title": "预约眼科检查",
        "manage_title": "我的预约",
        "console_title": "前台",
        "optometrist_title": "今日日程",
        "offer_title": "为您保留的时段",
        "error_title": "抱歉",
        "link_invalid": "此链接无效。请使用确认消息中的链接，或重新预约。",
        "link_expired": "此链接已过期。请重新预约或联系门店。",
        "booking_not_ready": "您的预约正在准备中，请稍后刷新此页面。",
        "unknown_store": "没有这家门店。",
        "unknown_optometrist": "没有这位验光师。",
    },
}


def pick_locale(explicit: str | None, accept_language: str | None) -> str:
    """`?lang=` wins, then the browser's first language; Chinese variants -> zh-CN."""
    for candidate in (explicit, *(accept_language or "").split(",")):
        tag = (candidate or "").split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return "en"


def server_text(locale: str, key: str) -> str:
    return _TEXTS.get(locale, _TEXTS["en"]).get(key, _TEXTS["en"].get(key, key))
