from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic_settings import SettingsConfigDict

from optisync_common.settings import ServiceSettings


class AnalyticsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ANALYTICS_", extra="ignore", frozen=True)

    service_name: str = "analytics"
    http_port: int = 8004
    # the aggregator process's web server (/healthz, /readyz, /metrics)
    worker_port: int = 8104
    consumer_group: str = "analytics-aggregator"
    consumer_offset_reset: Literal["earliest", "latest"] = "earliest"
    max_batch_records: int = 2000
    # event ids are remembered this long: longer than booking.facts.v1 keeps records (30 days)
    seen_retention_days: int = 35
    # how soon a newly mirrored topic (`<region>.booking.facts.v1`) is picked up by the pattern
    metadata_refresh_ms: int = 30000
    # how often the dashboard page asks the API for fresh numbers
    dashboard_refresh_ms: int = 500
    # the dashboard's default range: this many store-local days up to today
    dashboard_days: int = 14


@lru_cache
def get_settings() -> AnalyticsSettings:
    return AnalyticsSettings()
