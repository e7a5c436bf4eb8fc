"""iCalendar (RFC 5545) invites and feeds. Pure: documents in, text out.

Times are written in UTC (`...Z`), which every calendar converts to the viewer's zone, so an
exam booked across a DST change shows the wall time the store promised. The UID is the booking
id (stable across changes); SEQUENCE counts the changes an attendee must see (time, optometrist,
status), so a re-downloaded invite replaces the old one; a cancelled booking's invite is
`METHOD:CANCEL` with the same UID.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

PRODID = "-//OptiSync//Bookings//EN"
UID_DOMAIN = "optisync"
# History entries that change what the calendar shows.
SEQUENCED_EVENTS = frozenset({"rescheduled", "reassigned", "cancelled", "displaced"})

Method = Literal["PUBLISH", "REQUEST", "CANCEL"]


@dataclass(frozen=True)
class CalendarEvent:
    uid: str
    sequence: int
    start: dt.datetime
    end: dt.datetime
    stamp: dt.datetime
    summary: str
    cancelled: bool
    location: str = ""
    description: str = ""
    url: str = ""


def booking_uid(booking_id: str) -> str:
    return f"{booking_id}@{UID_DOMAIN}"


def sequence_of(history: Iterable[Mapping[str, Any]]) -> int:
    return sum(1 for entry in history if entry.get("event") in SEQUENCED_EVENTS)


def _utc(instant: dt.datetime) -> str:
    if instant.tzinfo is None:  # BSON datetimes come back naive; they are UTC
        instant = instant.replace(tzinfo=dt.UTC)
    return instant.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def escape_text(value: str) -> str:
    return (
        value.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )


def fold(line: str) -> str:
    """Lines longer than 75 octets continue on the next line after CRLF + space, never inside
    a UTF-8 sequence."""
    raw = line.encode()
    if len(raw) <= 75:
        return line
    parts: list[str] = []
    limit = 75
    while raw:
        cut = min(limit, len(raw))
        while cut < len(raw) and (raw[cut] & 0xC0) == 0x80:
            cut -= 1  # do not split a multi-byte character
        parts.append(raw[:cut].decode())
        raw = raw[cut:]
        limit = 74  # the leading space counts
    return "\r\n ".join(parts)


def _event_lines(event: CalendarEvent, organizer: str) -> list[str]:
    lines = [
        "BEGIN:VEVENT",
        f"UID:{event.uid}",
        f"SEQUENCE:{event.sequence}",
        f"DTSTAMP:{_utc(event.stamp)}",
        f"DTSTART:{_utc(event.start)}",
        f"DTEND:{_utc(event.end)}",
        f"SUMMARY:{escape_text(event.summary)}",
        f"STATUS:{'CANCELLED' if event.cancelled else 'CONFIRMED'}",
        f"ORGANIZER;CN={_param(organizer)}:mailto:bookings@{UID_DOMAIN}.invalid",
    ]
    if event.location:
        lines.append(f"LOCATION:{escape_text(event.location)}")
    if event.description:
        lines.append(f"DESCRIPTION:{escape_text(event.description)}")
    if event.url:
        lines.append(f"URL:{event.url}")
    lines.append("TRANSP:OPAQUE")
    lines.append("END:VEVENT")
    return lines


def _param(value: str) -> str:
    cleaned = value.replace('"', "'").replace("\r", " ").replace("\n", " ")
    return f'"{cleaned}"'


def render_calendar(
    events: Sequence[CalendarEvent],
    *,
    method: Method,
    organizer: str,
    name: str | None = None,
    timezone: str | None = None,
) -> str:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}", "CALSCALE:GREGORIAN"]
    lines.append(f"METHOD:{method}")
    if name:
        lines.append(f"X-WR-CALNAME:{escape_text(name)}")
    if timezone:
        lines.append(f"X-WR-TIMEZONE:{timezone}")
    for event in events:
        lines.extend(_event_lines(event, organizer))
    lines.append("END:VCALENDAR")
    return "\r\n".join(fold(line) for line in lines) + "\r\n"


def booking_event(
    doc: Mapping[str, Any],
    *,
    summary: str,
    location: str = "",
    description: str = "",
    url: str = "",
) -> CalendarEvent:
    """The calendar event of one booking document (as stored by the projector)."""
    history = doc.get("history") or []
    return CalendarEvent(
        uid=booking_uid(doc["_id"]),
        sequence=sequence_of(history),
        start=doc["slot_start"],
        end=doc["slot_end"],
        stamp=doc.get("updated_at") or doc["slot_start"],
        summary=summary,
        cancelled=doc["status"] == "cancelled",
        location=location,
        description=description,
        url=url,
    )


def invite(event: CalendarEvent, *, organizer: str, timezone: str | None = None) -> str:
    """The customer's `.ics`: a cancelled booking is a METHOD:CANCEL of the same UID."""
    return render_calendar(
        [event],
        method="CANCEL" if event.cancelled else "PUBLISH",
        organizer=organizer,
        timezone=timezone,
    )
