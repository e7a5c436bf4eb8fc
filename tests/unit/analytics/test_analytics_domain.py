"""Pure analytics logic: counters per event, dedup selection, rollups, rates, rankings,
abnormal stores and CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest

from services.analytics.domain.counters import booking_fact_increments, lead_bucket
from services.analytics.domain.dedup import (
    Item,
    deltas,
    first_occurrences,
    not_yet_applied,
)
from services.analytics.domain.kpis import (
    Granularity,
    GroupBy,
    KpiRow,
    StoreDay,
    abnormal_stores,
    period_of,
    rankings,
    rates,
    rollup,
    to_csv,
)


def test_cancellation_counts_actor_lead_bucket_and_lateness() -> None:
    inc = booking_fact_increments("cancelled", cancelled_by="store", late=True, lead_minutes=30)
    assert inc == {"cancelled": 1, "cancelled_by__store": 1, "cancelled_lead__lt_2h": 1,
                   "cancelled_late": 1}  # fmt: skip
    assert booking_fact_increments("rejected", reason="slot_taken") == {
        "rejected": 1, "rejected__slot_taken": 1,
    }  # fmt: skip
    # `reassigned` arrives with a newer FactKind: counted by value, no schema change needed
    assert booking_fact_increments("reassigned") == {"reassigned": 1}
    assert booking_fact_increments("something_new") == {"unknown_fact": 1}


@pytest.mark.parametrize(
    ("minutes", "bucket"),
    [(None, "unknown"), (0, "lt_2h"), (119, "lt_2h"), (120, "2h_24h"), (1439, "2h_24h"),
     (1440, "1d_7d"), (10079, "1d_7d"), (10080, "ge_7d")],
)  # fmt: skip
def test_lead_buckets(minutes: int | None, bucket: str) -> None:
    assert lead_bucket(minutes) == bucket


def _item(event: str, offset: int, doc: str = "s|2026-01-05", source: str = "t~0") -> Item:
    return Item(event, source, offset, doc, "s", "cn", "2026-01-05", {"requested": 1})


def test_dedup_keeps_first_of_each_event_and_skips_what_the_watermark_covers() -> None:
    first, repeats = first_occurrences([_item("a", 1), _item("b", 2), _item("a", 3)])
    assert [i.offset for i in first] == [1, 2] and [i.offset for i in repeats] == [3]
    pending, applied = not_yet_applied(
        [_item("a", 5), _item("b", 6), _item("c", 6, source="t~1")], {"s|2026-01-05": {"t~0": 5}}
    )
    assert [i.event_id for i in pending] == ["b", "c"]
    assert [i.event_id for i in applied] == ["a"]
    out = deltas(pending)["s|2026-01-05"]
    assert out.counts == {"requested": 2}
    assert out.watermarks == {"t~0": 6, "t~1": 6}


def _day(store: str, region: str, date: str, **counts: int) -> StoreDay:
    return StoreDay(store, region, dt.date.fromisoformat(date), dict(counts))


def test_rollups_by_iso_week_month_region_and_chain() -> None:
    days = [
        _day("s1", "cn", "2026-01-04", requested=2),  # Sunday: ISO week 1
        _day("s1", "cn", "2026-01-05", requested=3),  # Monday: ISO week 2
        _day("s2", "eu", "2026-01-05", requested=5),
        _day("s2", "eu", "2026-02-01", requested=7),
    ]
    weeks = rollup(days, Granularity.WEEK, GroupBy.CHAIN)
    assert [(r.period, r.period_start, r.counts["requested"]) for r in weeks] == [
        ("2026-W01", dt.date(2025, 12, 29), 2),
        ("2026-W02", dt.date(2026, 1, 5), 8),
        ("2026-W05", dt.date(2026, 1, 26), 7),
    ]
    months = rollup(days, Granularity.MONTH, GroupBy.REGION)
    assert [(r.period, r.key, r.counts["requested"]) for r in months] == [
        ("2026-01", "cn", 5), ("2026-01", "eu", 5), ("2026-02", "eu", 7),
    ]  # fmt: skip
    total = rollup(days, Granularity.TOTAL, GroupBy.STORE)
    assert {r.key: r.counts["requested"] for r in total} == {"s1": 5, "s2": 12}
    assert period_of(dt.date(2026, 12, 31), Granularity.WEEK)[0] == "2026-W53"


def test_rates_are_undefined_without_a_denominator() -> None:
    r = rates({"requested": 4, "confirmed": 3, "checked_in": 2, "no_show": 1, "cancelled": 0})
    assert r["conversion"] == 0.75
    assert r["attendance"] == 2 / 3
    assert r["no_show_rate"] == 1 / 3
    assert r["cancellation_rate"] == 0
    assert r["avg_rating"] is None and r["waitlist_fill_rate"] is None


def _store(key: str, **counts: int) -> KpiRow:
    return KpiRow("total", None, key, "cn", dict(counts))


def test_rankings_order_by_direction_and_skip_small_volumes() -> None:
    rows = [
        _store("a", requested=100, confirmed=90, cancelled=9),
        _store("b", requested=100, confirmed=50, cancelled=25),
        _store("c", requested=2, confirmed=2, cancelled=0),
    ]
    best, worst = rankings(rows, "conversion", min_volume=10)
    assert [r.store_id for r in best] == ["a", "b"] and [r.store_id for r in worst] == ["b", "a"]
    best, worst = rankings(rows, "cancellation_rate")
    assert [r.store_id for r in best] == ["c", "a", "b"] and worst[0].store_id == "b"


def test_abnormal_store_is_compared_with_the_rest_of_the_chain() -> None:
    normal = [_store(f"s{i}", confirmed=100, cancelled=8 + i % 3) for i in range(5)]
    high = _store("high", confirmed=100, cancelled=30)
    tiny = _store("tiny", confirmed=3, cancelled=3)  # below min_volume: not judged
    found = abnormal_stores([*normal, high, tiny], "cancellation_rate", sigmas=2)
    assert [a.store_id for a in found] == ["high"]
    assert found[0].others_mean == pytest.approx((8 + 9 + 10 + 8 + 9) / 500)
    # Three stores: with the store itself in the sample this could never exceed 2 sigma.
    three = [_store("x", confirmed=100, cancelled=8), _store("y", confirmed=100, cancelled=10),
             _store("z", confirmed=100, cancelled=40)]  # fmt: skip
    assert [a.store_id for a in abnormal_stores(three, "cancellation_rate")] == ["z"]
    assert abnormal_stores(normal, "no_show_rate") == []


def test_csv_has_a_header_and_one_line_per_row() -> None:
    text = to_csv([_store("a", requested=4, confirmed=3), _store("b")])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["key"] for r in rows] == ["a", "b"]
    assert rows[0]["confirmed"] == "3" and rows[0]["conversion"] == "0.750000"
    assert rows[1]["conversion"] == ""
