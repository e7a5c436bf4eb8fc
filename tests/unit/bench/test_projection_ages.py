"""The bench reads how far behind the projections were in a step from their histograms."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

import bench.run as bench_run
from bench.run import _age_summary


def _histogram(sum_s: float, le: dict[str, float]) -> dict[str, float]:
    return {"sum": sum_s, "count": le["+Inf"], **le}


def test_a_step_reports_its_own_batches_mean_and_bound():
    before = {"booking-projector": _histogram(10.0, {"0.2": 90, "0.5": 100, "1.0": 100,
                                                     "+Inf": 100})}  # fmt: skip
    after = {
        "booking-projector": _histogram(12.5, {"0.2": 95, "0.5": 103, "1.0": 110, "+Inf": 110}),
        "booking-projector-views": _histogram(0.3, {"0.2": 3, "0.5": 3, "1.0": 3, "+Inf": 3}),
    }
    assert _age_summary(before, after) == {
        # 10 batches in the step, 2.5 s between them, the slowest between 0.5 and 1 s
        "booking-projector": {"mean_ms": 250.0, "max_le_s": "1.0"},
        "booking-projector-views": {"mean_ms": 100.0, "max_le_s": "0.2"},
    }


def test_a_group_without_batches_in_the_step_is_left_out():
    same = {"booking-projector": _histogram(1.0, {"0.2": 5, "+Inf": 5})}
    assert _age_summary(same, same) == {}


def test_histograms_are_read_per_label_from_the_exposition_format(monkeypatch):
    registry = CollectorRegistry()
    hops = Histogram(
        "optisync_booking_command_hop_seconds",
        "hops",
        ["hop"],
        buckets=(0.01, 0.1),
        registry=registry,
    )
    hops.labels("produce").observe(0.005)
    hops.labels("produce").observe(0.05)
    hops.labels("decide").observe(0.5)
    exposition = generate_latest(registry).decode().splitlines()
    monkeypatch.setattr(bench_run, "_metrics", lambda url: exposition)
    assert bench_run._histogram("http://api", "optisync_booking_command_hop_seconds", "hop") == {
        "produce": {"0.01": 1.0, "0.1": 2.0, "+Inf": 2.0, "sum": 0.055, "count": 2.0},
        "decide": {"0.01": 0.0, "0.1": 0.0, "+Inf": 1.0, "sum": 0.5, "count": 1.0},
    }
    assert bench_run._hops("http://api") == {"produce": (0.055, 2.0), "decide": (0.5, 1.0)}
