"""Base settings shared by every service (full-stack-fastapi-template style).

Each service subclasses `ServiceSettings` with its own env prefix (`BOOKING_`, `ROSTER_`...).
The infrastructure locations are deliberately unprefixed (`KAFKA_BOOTSTRAP`, `REDIS_URL`,
`MONGO_URL`, `OPTISYNC_REGION`, `OPTISYNC_ENV`): one host points all its services at one cluster.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "dev-only-not-a-secret"


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    service_name: str = "optisync"
    environment: Literal["dev", "test", "staging", "prod"] = Field(
        default="dev", validation_alias=AliasChoices("OPTISYNC_ENV", "ENVIRONMENT")
    )
    region: str = Field(default="cn", validation_alias=AliasChoices("OPTISYNC_REGION", "REGION"))
    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092", validation_alias=AliasChoices("KAFKA_BOOTSTRAP")
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", validation_alias=AliasChoices("REDIS_URL")
    )
    mongo_url: str = Field(
        default="mongodb://127.0.0.1:27017/", validation_alias=AliasChoices("MONGO_URL")
    )
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Signs outbound webhooks and internal tokens; must be set explicitly outside dev/test.
    signing_secret: SecretStr = SecretStr(DEV_SECRET)
    max_body_bytes: int = 64 * 1024
    redis_max_connections: int = 64
    # Local state of stream workers (RocksDB tables); rebuilt from changelog topics if lost.
    state_dir: str = Field(
        default=".run/state", validation_alias=AliasChoices("OPTISYNC_STATE_DIR")
    )

    @property
    def mongo_database(self) -> str:
        """Each service owns its own database; nothing reads another service's storage."""
        return f"optisync_{self.service_name}"

    @property
    def redis_prefix(self) -> str:
        return f"{self.service_name}:"

    @model_validator(mode="after")
    def _refuse_default_secret_outside_dev(self) -> Self:
        if self.environment not in ("dev", "test") and (
            self.signing_secret.get_secret_value() == DEV_SECRET
        ):
            raise ValueError(
                f"signing_secret still has its development default in environment "
                f"{self.environment!r}: set {self.model_config.get('env_prefix', '')}"
                "SIGNING_SECRET"
            )
        return self
