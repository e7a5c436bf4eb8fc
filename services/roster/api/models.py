"""Request bodies of the roster API (responses are plain documents)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events.base import Id, Locale, LocalTime, RequestDay


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Interval(_Body):
    start: LocalTime
    end: LocalTime


class OpeningInterval(_Body):
    open: LocalTime
    close: LocalTime


class StoreBody(_Body):
    name: str = Field(min_length=1, max_length=200)
    region: str = Field(pattern=r"^[a-z][a-z0-9-]*$", description="the store's home region")
    timezone: str = Field(examples=["Europe/Berlin"], description="IANA time zone")
    opening_hours: dict[str, list[OpeningInterval]] = Field(
        description="weekday (mon..sun) -> local opening intervals; a missing day is closed"
    )
    slot_minutes: int = Field(default=15, ge=5, le=240)
    locale: Locale = "en"
    address: str | None = Field(default=None, max_length=500)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)


class ExamTypeBody(_Body):
    name: str = Field(min_length=1, max_length=200)
    duration_minutes: int = Field(ge=5, le=480)
    required_skill: Id
    preparation_notes: str | None = Field(
        default=None, max_length=1000, description="shown to customers when they book"
    )


class OptometristBody(_Body):
    name: str = Field(min_length=1, max_length=200)
    skills: list[Id] = Field(min_length=1)
    home_store_id: Id
    store_ids: list[Id] = Field(min_length=1)
    rehire: bool = Field(
        default=False,
        description="true clears an announced or past departure (offboard); any other "
        "change keeps it",
    )


class OffboardBody(_Body):
    effective_date: RequestDay = Field(description="first local date not worked")


class ShiftBody(_Body):
    optometrist_id: Id
    store_id: Id
    date: RequestDay = Field(description="store-local date")
    start: LocalTime
    end: LocalTime
    breaks: list[Interval] = Field(default_factory=list, max_length=10)


class NewShiftBody(ShiftBody):
    shift_id: Id | None = Field(default=None, description="default: a new id")


class SwapBody(_Body):
    optometrist_id: Id | None = Field(default=None, description="cover: who takes the shift")
    with_shift_id: Id | None = Field(default=None, description="exchange with this shift")


class DayPatternBody(_Body):
    start: LocalTime
    end: LocalTime
    breaks: list[Interval] = Field(default_factory=list, max_length=10)


class TemplateBody(_Body):
    optometrist_id: Id
    store_id: Id
    days: dict[str, DayPatternBody] = Field(description="weekday (mon..sun) -> hours")


class ExpandBody(_Body):
    first: RequestDay
    last: RequestDay


class PublishWeekBody(_Body):
    week_start: RequestDay = Field(description="first local date of the 7-day week")


class PublishShiftsBody(_Body):
    shift_ids: list[Id] = Field(min_length=1, max_length=500)


class LeaveBody(_Body):
    leave_id: Id | None = None
    start_date: RequestDay
    end_date: RequestDay
    kind: Literal["leave", "sick"] = "leave"


class SickDayBody(_Body):
    date: RequestDay
    days: int = Field(default=1, ge=1, le=30)


class TrainingBody(_Body):
    training_id: Id | None = None
    date: RequestDay
    start: LocalTime
    end: LocalTime
    store_id: Id | None = Field(default=None, description="whose time zone; default home store")
