from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from optisync_common.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_", extra="ignore", frozen=True)

    service_name: str = "notify"
    http_port: int = 8003
    # the worker's web server (/healthz, /readyz, /metrics of the consumer and dispatcher)
    worker_port: int = 8103

    # Consumer group of the worker; a new group starts at `consumer_offset_reset`.
    consumer_group: str = "notify-worker"
    # "latest": a brand-new deployment does not message customers about a week of old events.
    consumer_offset_reset: Literal["earliest", "latest"] = "latest"
    # Events older than this (a replay, a long outage) are recorded as skipped, not sent.
    max_event_age_s: float = 3600.0
    # Where a channel goes when neither the store nor its chain configured it (empty: nowhere,
    # the notification is recorded as skipped with `no_channel_config`).
    default_webhook_url: str = ""
    # Adapter call timeout; always well below the lease so two instances never overlap.
    adapter_timeout_s: float = 5.0
    lease_s: float = 15.0
    max_attempts: int = 5
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0
    breaker_failures: int = 5
    breaker_open_s: float = 30.0
    # Reminders: minutes before the visit (multiples of a day count in store-local days).
    reminder_offsets_min: tuple[int, ...] = (1440, 120)
    # A reminder is stale (recorded as skipped) this close to the visit.
    reminder_min_notice_min: int = 30
    feedback_delay_s: float = 3600.0
    feedback_reply_window_h: int = 72
    # Due reminders/retries: how often the scheduler looks.
    poll_interval_s: float = 0.5
    # How often a scheduler checks that Redis still holds the due index (rebuilt if not).
    due_index_check_s: float = Field(default=5.0, gt=0)
    # Where customers accept a waitlist offer: `<public_booking_url>/offers/<offer_token>`
    # (the booking API in dev).
    public_booking_url: str = "http://127.0.0.1:8002"
    # Inbound webhooks: allowed clock skew of the signature timestamp.
    inbound_max_skew_s: int = 300


@lru_cache
def get_settings() -> NotifySettings:
    return NotifySettings()
