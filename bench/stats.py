"""Latency percentiles, the one way every benchmark here reports them."""

from __future__ import annotations

from collections.abc import Iterable


def percentiles(latencies_ms: Iterable[float], *points: float) -> list[float]:
    """Nearest-rank percentiles (0 < p <= 1), rounded to 0.1 ms; NaN when there is no sample."""
    ordered = sorted(latencies_ms)
    if not ordered:
        return [float("nan")] * len(points)
    return [round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1) for p in points]
