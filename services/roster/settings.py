from __future__ import annotations

from functools import lru_cache

from pydantic_settings import SettingsConfigDict

from optisync_common.settings import ServiceSettings


class RosterSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ROSTER_", extra="ignore", frozen=True)

    service_name: str = "roster"
    http_port: int = 8001


@lru_cache
def get_settings() -> RosterSettings:
    return RosterSettings()
