from __future__ import annotations

from functools import lru_cache

from pydantic_settings import SettingsConfigDict

from optisync_common.settings import ServiceSettings


class BookingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BOOKING_", extra="ignore", frozen=True)

    service_name: str = "booking"
    http_port: int = 8002
    # faust worker's web server (/healthz, /readyz, /metrics of the stream worker)
    worker_port: int = 8102


@lru_cache
def get_settings() -> BookingSettings:
    return BookingSettings()
