from __future__ import annotations

from functools import lru_cache

from pydantic_settings import SettingsConfigDict

from optisync_common.settings import ServiceSettings


class BookingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BOOKING_", extra="ignore", frozen=True)

    service_name: str = "booking"
    http_port: int = 8002
    # Pages: base URL customers reach the pages under (manage links, .ics URLs); empty: the
    # request's own. Manage links are signed with `signing_secret` (refused at its development
    # default outside dev/test) and expire after this many days.
    public_url: str = ""
    manage_link_ttl_days: int = 60
    # faust worker's web server (/healthz, /readyz, /metrics of the stream worker)
    worker_port: int = 8102
    # projector process (MongoDB booking documents, Redis views): /healthz, /readyz, /metrics
    projector_port: int = 8202
    # how long POST handlers wait for the processor's decision before answering 202
    decision_timeout_s: float = 2.0
    # how long command outcomes (GET /v1/commands/{id}) stay readable in Redis
    idempotency_ttl_s: int = 86400


@lru_cache
def get_settings() -> BookingSettings:
    return BookingSettings()
