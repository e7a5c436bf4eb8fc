"""Free and working windows: the one-walk subtraction against cutting piece by piece, and the
memo of working windows following every roster and store change it depends on."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from services.booking.domain.decisions import _subtract, working_windows
from services.booking.domain.model import Day, Shift, StoreConfig

interval = st.tuples(st.integers(0, 96), st.integers(1, 24)).map(
    lambda w: (w[0] * 300, (w[0] + w[1]) * 300)
)


def cut_piece_by_piece(windows, holes):
    """The plain definition: every hole cuts every piece left by the holes before it."""
    result = sorted(windows)
    for h_start, h_end in sorted(holes):
        pieces = []
        for start, end in result:
            if h_end <= start or end <= h_start:
                pieces.append((start, end))
                continue
            if start < h_start:
                pieces.append((start, h_start))
            if h_end < end:
                pieces.append((h_end, end))
        result = pieces
    return result


@given(st.lists(interval, max_size=4), st.lists(interval, max_size=12))
def test_subtracting_holes_matches_cutting_piece_by_piece(windows, holes):
    """Overlapping holes (leave over a training) and overlapping windows (two shifts) too."""
    assert _subtract(windows, holes) == cut_piece_by_piece(windows, holes)


DATE = dt.date(2026, 12, 7)  # a Monday


def store(tz: str = "Europe/Berlin", **changes: object) -> StoreConfig:
    cfg = StoreConfig(
        store_id="s",
        timezone=tz,
        opening_hours={"mon": [("09:00", "18:00")]},
        optometrists={"A": frozenset({"general"})},
    )
    for name, value in changes.items():
        setattr(cfg, name, value)
    return cfg


def day_with_shift(start: str = "08:00", end: str = "17:00") -> Day:
    return Day(DATE, shifts={"a1": Shift("a1", "A", DATE, start, end, (("12:00", "13:00"),))})


def at(hhmm: str, tz: str = "Europe/Berlin") -> int:
    local = dt.datetime.combine(DATE, dt.time.fromisoformat(hhmm), dt.UTC)
    return int(local.timestamp()) - (3600 if tz == "Europe/Berlin" else 0)


def test_working_windows_are_the_shift_less_breaks_inside_opening_hours():
    assert working_windows(store(), day_with_shift(), "A") == [
        (at("09:00"), at("12:00")),
        (at("13:00"), at("17:00")),
    ]


def test_the_memo_follows_every_change_the_windows_depend_on():
    cfg, day = store(), day_with_shift()
    before = working_windows(cfg, day, "A")

    day.absences["leave"] = ("A", at("15:00"), at("18:00"))
    assert working_windows(cfg, day, "A") == [
        (at("09:00"), at("12:00")),
        (at("13:00"), at("15:00")),
    ]
    del day.absences["leave"]
    assert working_windows(cfg, day, "A") == before

    day.shifts["a1"] = Shift("a1", "A", DATE, "10:00", "17:00")
    assert working_windows(cfg, day, "A") == [(at("10:00"), at("17:00"))]

    assert working_windows(store(tz="UTC"), day, "A") == [(at("10:00", "UTC"), at("17:00", "UTC"))]
    later_opening = store(opening_hours={"mon": [("11:00", "18:00")]})
    assert working_windows(later_opening, day, "A") == [(at("11:00"), at("17:00"))]
    assert working_windows(store(closed_dates={DATE}), day, "A") == []
    assert working_windows(store(departures={"A": DATE}), day, "A") == []
    assert working_windows(cfg, day, "B") == []


def test_callers_may_change_the_windows_they_get():
    cfg, day = store(), day_with_shift()
    working_windows(cfg, day, "A").clear()
    assert len(working_windows(cfg, day, "A")) == 2
