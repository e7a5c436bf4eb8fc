from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic_settings import SettingsConfigDict

from optisync_common.settings import ServiceSettings


class RosterSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ROSTER_", extra="ignore", frozen=True)

    service_name: str = "roster"
    http_port: int = 8001
    # The day view's projection of booking.events.v1 (a plain consumer group).
    bookings_group: str = "roster-bookings-projection"
    bookings_offset_reset: Literal["earliest", "latest"] = "earliest"
    # How often unsent outbox batches (Kafka was down) are retried.
    outbox_sweep_s: float = 2.0


@lru_cache
def get_settings() -> RosterSettings:
    return RosterSettings()
