"""Latency percentiles and steady throughput, the one way every benchmark here reports them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def percentiles(latencies_ms: Iterable[float], *points: float) -> list[float]:
    """Nearest-rank percentiles (0 < p <= 1), rounded to 0.1 ms; NaN when there is no sample."""
    ordered = sorted(latencies_ms)
    if not ordered:
        return [float("nan")] * len(points)
    return [round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1) for p in points]


def steady_rate(answered_at: Iterable[float], start: float, seconds: float) -> float:
    """Answers per second given between the step's first second and its end.

    Dividing every answer by the time until the last one would count the final requests'
    latency as lost rate (a 10 s step answered 150 ms late reads 1.5% short even when the
    server kept up). With a steady latency, answers in [start + 1, start + seconds) are the
    requests sent in a window of the same length; a server falling behind answers fewer.
    """
    settled = start + min(1.0, seconds / 2)
    end = start + seconds
    answered = sum(1 for t in answered_at if settled <= t < end)
    return round(answered / (end - settled), 1)


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table, columns padded so that it also reads as printed."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]

    def line(cells: list[Any]) -> str:
        return (
            "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=False)) + " |"
        )

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])
