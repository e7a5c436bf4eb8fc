"""Prometheus metrics of the analytics pipeline (the Grafana dashboard in
deploy/grafana/analytics.json charts these)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

from services.analytics.domain.dedup import Item

if TYPE_CHECKING:
    from services.analytics.adapters.aggregator import BatchStats

EVENTS = Counter(
    "optisync_analytics_events_total",
    "Events seen by the aggregator, by outcome (counted, duplicate, redelivered, recovered, "
    "ignored, undecodable)",
    ["topic", "type", "outcome"],
)
FACTS_COUNTED = Counter(
    "optisync_analytics_counted_total", "Events folded into KPI documents, by counter", ["counter"]
)
BATCH_SECONDS = Histogram(
    "optisync_analytics_batch_seconds",
    "Time to aggregate one consumed batch (decode, dedup, MongoDB writes)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_RECORDS = Histogram(
    "optisync_analytics_batch_records",
    "Records per consumed batch",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)
DOCUMENTS_WRITTEN = Counter(
    "optisync_analytics_documents_written_total", "Guarded KPI document updates"
)
EVENT_LAG = Histogram(
    "optisync_analytics_event_lag_seconds",
    "Oldest event of a batch: occurred_at -> its counts are in MongoDB (readable by the API)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
CONFLICTS = Counter(
    "optisync_analytics_watermark_conflicts_total",
    "Batches redone because another consumer moved a document's watermark (rebalance overlap)",
)
LAST_APPLIED = Gauge(
    "optisync_analytics_last_batch_timestamp_seconds", "When the last batch was applied"
)


def observe_batch(
    stats: BatchStats, counted: Sequence[Item], seconds: float, now: dt.datetime
) -> None:
    BATCH_SECONDS.observe(seconds)
    BATCH_RECORDS.observe(stats.records)
    DOCUMENTS_WRITTEN.inc(stats.documents)
    for outcome, n in (
        ("duplicate", stats.duplicates),
        ("redelivered", stats.redelivered),
        ("recovered", stats.recovered),
    ):
        if n:
            EVENTS.labels("*", "*", outcome).inc(n)
    if counted:
        EVENTS.labels("*", "*", "counted").inc(len(counted))
    for item in counted:
        for name in item.increments:
            if not name.startswith("rating_sum"):
                FACTS_COUNTED.labels(name).inc()
    if stats.oldest_event is not None:
        EVENT_LAG.observe(max(0.0, (now - stats.oldest_event).total_seconds()))
    LAST_APPLIED.set(now.timestamp())
