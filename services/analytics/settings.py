from __future__ import annotations

from functools import lru_cache

from pydantic_settings import SettingsConfigDict

from optisync_common.settings import ServiceSettings


class AnalyticsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ANALYTICS_", extra="ignore", frozen=True)

    service_name: str = "analytics"
    http_port: int = 8004
    # faust worker's web server (/healthz, /readyz, /metrics of the stream worker)
    worker_port: int = 8104


@lru_cache
def get_settings() -> AnalyticsSettings:
    return AnalyticsSettings()
