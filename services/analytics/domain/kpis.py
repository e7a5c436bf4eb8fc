"""KPI arithmetic over per store-day counters (pure): rollups by period and by store / region /
chain, derived rates, rankings, abnormal stores and CSV.

Rollups are done here rather than in the database: FerretDB lacks some aggregation stages and
is slow on large scans, so the store reads the store-day documents of a range by key and this
module adds them up.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from services.analytics.domain.counters import add_into


class Granularity(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    TOTAL = "total"


class GroupBy(StrEnum):
    CHAIN = "chain"
    REGION = "region"
    STORE = "store"


@dataclass(frozen=True)
class StoreDay:
    """The counters of one store on one store-local day (a KPI document)."""

    store_id: str
    region: str
    date: dt.date
    counts: dict[str, int]


@dataclass
class KpiRow:
    period: str  # "2026-11-26", "2026-W48", "2026-11" or "total"
    period_start: dt.date | None
    key: str  # store id, region, or "chain"
    region: str | None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def rates(self) -> dict[str, float | None]:
        return rates(self.counts)


def period_of(day: dt.date, granularity: Granularity) -> tuple[str, dt.date | None]:
    """Label and first day of the period `day` falls in (weeks are ISO weeks from Monday)."""
    if granularity is Granularity.DAY:
        return day.isoformat(), day
    if granularity is Granularity.WEEK:
        year, week, weekday = day.isocalendar()
        return f"{year}-W{week:02d}", day - dt.timedelta(days=weekday - 1)
    if granularity is Granularity.MONTH:
        return f"{day.year}-{day.month:02d}", day.replace(day=1)
    return "total", None


def rollup(days: Iterable[StoreDay], granularity: Granularity, group_by: GroupBy) -> list[KpiRow]:
    """Sum store-days into one row per (period, group), sorted by period then key."""
    rows: dict[tuple[str, str], KpiRow] = {}
    for day in days:
        label, start = period_of(day.date, granularity)
        if group_by is GroupBy.STORE:
            key, region = day.store_id, day.region
        elif group_by is GroupBy.REGION:
            key, region = day.region, day.region
        else:
            key, region = "chain", None
        row = rows.get((label, key))
        if row is None:
            row = rows[(label, key)] = KpiRow(label, start, key, region)
        add_into(row.counts, day.counts)
    return sorted(rows.values(), key=lambda r: (r.period_start or dt.date.min, r.key))


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def rates(c: dict[str, int]) -> dict[str, float | None]:
    """Derived KPIs; None where the denominator is zero (no data is not 0%)."""
    g = c.get
    attended = g("checked_in", 0)
    sent, dead = g("delivery__sent", 0), g("delivery__dead_lettered", 0)
    return {
        "view_to_request": _ratio(g("requested", 0), g("views", 0)),
        "conversion": _ratio(g("confirmed", 0), g("requested", 0)),
        "attendance": _ratio(attended, g("confirmed", 0)),
        "cancellation_rate": _ratio(g("cancelled", 0), g("confirmed", 0)),
        "late_cancellation_rate": _ratio(g("cancelled_late", 0), g("confirmed", 0)),
        "no_show_rate": _ratio(g("no_show", 0), attended + g("no_show", 0)),
        "waitlist_fill_rate": _ratio(g("waitlist_filled", 0), g("waitlist_offered", 0)),
        "delivery_success": _ratio(sent, sent + dead),
        "avg_rating": _ratio(g("rating_sum", 0), g("feedback", 0)),
    }


# Which way is good, for rankings; and the counter a rate must have enough of to be ranked.
HIGHER_IS_BETTER: dict[str, bool] = {
    "conversion": True,
    "attendance": True,
    "cancellation_rate": False,
    "no_show_rate": False,
    "waitlist_fill_rate": True,
    "delivery_success": True,
    "avg_rating": True,
}
VOLUME_OF: dict[str, str] = {
    "conversion": "requested",
    "attendance": "confirmed",
    "cancellation_rate": "confirmed",
    "no_show_rate": "no_show",
    "waitlist_fill_rate": "waitlist_offered",
    "delivery_success": "delivery_attempts",
    "avg_rating": "feedback",
}


def _volume(row: KpiRow, metric: str) -> int:
    if metric == "no_show_rate":
        return row.counts.get("checked_in", 0) + row.counts.get("no_show", 0)
    return row.counts.get(VOLUME_OF[metric], 0)


@dataclass(frozen=True)
class Ranked:
    store_id: str
    region: str | None
    value: float
    volume: int


def rankings(
    store_rows: Sequence[KpiRow], metric: str, *, limit: int = 5, min_volume: int = 1
) -> tuple[list[Ranked], list[Ranked]]:
    """(best, worst) stores by `metric`; ties broken by volume (more data first), then id."""
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"unknown metric {metric!r}")
    ranked = []
    for row in store_rows:
        value = row.rates[metric]
        volume = _volume(row, metric)
        if value is not None and volume >= min_volume:
            ranked.append(Ranked(row.key, row.region, value, volume))
    sign = -1 if HIGHER_IS_BETTER[metric] else 1
    best = sorted(ranked, key=lambda r: (sign * r.value, -r.volume, r.store_id))
    worst = sorted(ranked, key=lambda r: (-sign * r.value, -r.volume, r.store_id))
    return best[:limit], worst[:limit]


@dataclass(frozen=True)
class Anomaly:
    store_id: str
    region: str | None
    value: float
    others_mean: float
    others_stdev: float
    z: float


# A chain where every other store has the same rate has no spread to compare with: treat the
# spread as at least one percentage point so a store is flagged only for a real gap.
MIN_STDEV = 0.01


def abnormal_stores(
    store_rows: Sequence[KpiRow], metric: str, *, sigmas: float = 2.0, min_volume: int = 20
) -> list[Anomaly]:
    """Stores whose `metric` is more than `sigmas` standard deviations above the rest of the
    chain. Each store is compared with the others (leave-one-out): with the store itself in the
    sample, no store of a three-store chain could ever be two deviations away from the mean."""
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"unknown metric {metric!r}")
    values = [
        (row, value)
        for row in store_rows
        if (value := row.rates[metric]) is not None and _volume(row, metric) >= min_volume
    ]
    found = []
    for i, (row, value) in enumerate(values):
        others = [v for j, (_, v) in enumerate(values) if j != i]
        if len(others) < 2:
            continue
        mean = statistics.fmean(others)
        stdev = max(statistics.pstdev(others), MIN_STDEV)
        z = (value - mean) / stdev
        if z > sigmas:
            found.append(Anomaly(row.key, row.region, value, mean, stdev, z))
    return sorted(found, key=lambda a: -a.z)


CSV_COUNTERS: tuple[str, ...] = (
    "views", "requested", "confirmed", "rejected", "cancelled", "cancelled_by__customer",
    "cancelled_by__store", "cancelled_late", "rescheduled", "checked_in", "completed",
    "no_show", "displaced", "reassigned", "waitlist_joined", "waitlist_offered",
    "waitlist_filled", "delivery_attempts", "delivery__sent", "delivery__dead_lettered",
    "feedback", "rating_sum",
)  # fmt: skip


def to_csv(rows: Sequence[KpiRow]) -> str:
    """One line per row: period, group, every counter, every rate (empty when undefined)."""
    rate_names = list(rates({}).keys())
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["period", "key", "region", *CSV_COUNTERS, *rate_names])
    for row in rows:
        derived = row.rates
        writer.writerow(
            [
                row.period,
                row.key,
                row.region or "",
                *(row.counts.get(name, 0) for name in CSV_COUNTERS),
                *("" if (v := derived[n]) is None or math.isnan(v) else f"{v:.6f}"
                  for n in rate_names),
            ]
        )  # fmt: skip
    return out.getvalue()
