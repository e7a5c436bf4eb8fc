"""The demo chain `make up` loads: one region, 3 stores, 6 optometrists, a week of shifts.

Pure data built from a start date, so it is the same every run (ids are stable, which makes
re-seeding idempotent).
"""

from __future__ import annotations

from datetime import date, time, timedelta

from services.roster.domain.model import (
    WEEKDAYS,
    Chain,
    ExamType,
    Optometrist,
    Shift,
    Store,
    TimeRange,
)

REGION = "cn"
TZ = "Asia/Shanghai"

EXAM_TYPES = (
    ExamType("standard", "Standard eye exam", 30, "general",
             "Bring your current glasses or contact lenses."),
    ExamType("child_first", "Child first exam", 45, "pediatric",
             "A parent or guardian comes along."),
    ExamType("contact_lens_fitting", "Contact-lens fitting", 40, "contact_lens",
             "Wear glasses, not lenses, for 24 hours before."),
    ExamType("dilated", "Dilated exam", 60, "dilation",
             "Do not drive for 4 hours afterwards; bring sunglasses."),
)  # fmt: skip


def _hours(open_: time, close: time) -> tuple[TimeRange, ...]:
    return (TimeRange(open_, close),)


def _store(store_id: str, name: str, address: str, lat: float, lon: float) -> Store:
    weekday = _hours(time(9), time(21))
    return Store(
        store_id=store_id,
        name=name,
        region=REGION,
        timezone=TZ,
        opening_hours={**{d: weekday for d in WEEKDAYS[:6]}, "sun": _hours(time(10), time(18))},
        locale="zh-CN",
        address=address,
        latitude=lat,
        longitude=lon,
    )


STORES = (
    _store("demo-sh-jingan", "Shanghai Jing'an", "1618 W Nanjing Rd, Shanghai", 31.2235, 121.4454),
    _store("demo-bj-sanlitun", "Beijing Sanlitun", "19 Sanlitun Rd, Beijing", 39.9334, 116.4547),
    _store("demo-sz-futian", "Shenzhen Futian", "3008 Shennan Blvd, Shenzhen", 22.5410, 114.0580),
)  # fmt: skip

OPTOMETRISTS = (
    Optometrist("demo-opt-li", "Li Wei", frozenset({"general", "dilation"}),
                "demo-sh-jingan", ("demo-sh-jingan",)),
    Optometrist("demo-opt-chen", "Chen Jing", frozenset({"general", "contact_lens", "pediatric"}),
                "demo-sh-jingan", ("demo-sh-jingan", "demo-sz-futian")),
    Optometrist("demo-opt-wang", "Wang Fang", frozenset({"general", "pediatric"}),
                "demo-bj-sanlitun", ("demo-bj-sanlitun",)),
    Optometrist("demo-opt-zhang", "Zhang Min", frozenset({"general", "contact_lens", "dilation"}),
                "demo-bj-sanlitun", ("demo-bj-sanlitun",)),
    Optometrist("demo-opt-liu", "Liu Yang", frozenset({"general", "dilation"}),
                "demo-sz-futian", ("demo-sz-futian",)),
    Optometrist("demo-opt-huang", "Huang Lei", frozenset({"general", "contact_lens"}),
                "demo-sz-futian", ("demo-sz-futian",)),
)  # fmt: skip

MORNING = TimeRange(time(9), time(17))
LATE = TimeRange(time(13), time(21))
LUNCH = TimeRange(time(12), time(13))
SUPPER = TimeRange(time(17), time(18))


def _shift_for(opt: Optometrist, day: date, index: int) -> Shift | None:
    """The two optometrists of a store take different days off and alternate early/late;
    Chen Jing covers Shenzhen on Sundays (she works at two stores)."""
    if day.weekday() == (index * 3) % 7:
        return None
    weekday = WEEKDAYS[day.weekday()]
    store_id = opt.store_ids[-1] if weekday == "sun" else opt.home_store_id
    if weekday == "sun":
        hours, breaks = TimeRange(time(10), time(18)), (LUNCH,)
    elif (day.toordinal() + index) % 2 == 0:
        hours, breaks = MORNING, (LUNCH,)
    else:
        hours, breaks = LATE, (SUPPER,)
    return Shift(
        shift_id=f"{opt.optometrist_id}-{day.isoformat()}",
        optometrist_id=opt.optometrist_id,
        store_id=store_id,
        day=day,
        hours=hours,
        breaks=breaks,
    )


def demo_chain(first_day: date, days: int = 7) -> Chain:
    shifts = []
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        for index, opt in enumerate(OPTOMETRISTS):
            shift = _shift_for(opt, day, index)
            if shift is not None:
                shifts.append(shift)
    return Chain(STORES, EXAM_TYPES, OPTOMETRISTS, tuple(shifts))
