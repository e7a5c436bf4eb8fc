from __future__ import annotations

from functools import lru_cache

from pydantic_settings import SettingsConfigDict

from optisync_common.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_", extra="ignore", frozen=True)

    service_name: str = "notify"
    http_port: int = 8003
    # faust worker's web server (/healthz, /readyz, /metrics of the stream worker)
    worker_port: int = 8103


@lru_cache
def get_settings() -> NotifySettings:
    return NotifySettings()
