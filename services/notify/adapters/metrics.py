"""Notify's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

DELIVERIES = Counter(
    "optisync_notify_deliveries_total", "Channel adapter outcomes", ["channel", "status"]
)
ADAPTER_LATENCY = Histogram(
    "optisync_notify_adapter_seconds",
    "Channel adapter call latency",
    ["channel"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENT_TO_ADAPTER = Histogram(
    "optisync_notify_event_to_adapter_seconds",
    "From the event's occurred_at to the adapter call returning",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
NOTIFICATIONS_QUEUED = Counter(
    "optisync_notify_queued_total", "Notifications queued in the outbox", ["kind"]
)
UNCERTAIN_RESENDS = Counter(
    "optisync_notify_uncertain_resends_total",
    "Sends repeating a call whose outcome a killed sender never recorded (same idempotency key)",
    ["channel"],
)
