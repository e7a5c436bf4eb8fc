import pytest
from pydantic import ValidationError

from optisync_common.settings import DEV_SECRET, ServiceSettings
from services.booking.settings import BookingSettings


def test_infrastructure_locations_come_from_unprefixed_env(monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "kafka.example:19092")
    monkeypatch.setenv("REDIS_URL", "redis://cache.example:6380/1")
    monkeypatch.setenv("MONGO_URL", "mongodb://db.example:27018/")
    settings = BookingSettings()
    assert settings.kafka_bootstrap == "kafka.example:19092"
    assert settings.redis_url == "redis://cache.example:6380/1"
    assert settings.mongo_url == "mongodb://db.example:27018/"


def test_service_fields_use_the_service_prefix(monkeypatch):
    monkeypatch.setenv("BOOKING_HTTP_PORT", "9555")
    monkeypatch.setenv("ROSTER_HTTP_PORT", "9666")  # another service's prefix is ignored
    assert BookingSettings().http_port == 9555


def test_each_service_owns_its_database_and_redis_prefix():
    settings = BookingSettings()
    assert settings.mongo_database == "optisync_booking"
    assert settings.redis_prefix == "booking:"


@pytest.mark.parametrize("environment", ["staging", "prod"])
def test_default_secret_is_refused_outside_dev(monkeypatch, environment):
    monkeypatch.setenv("OPTISYNC_ENV", environment)
    with pytest.raises(ValidationError, match="SIGNING_SECRET"):
        BookingSettings()


def test_explicit_secret_is_accepted_in_prod(monkeypatch):
    monkeypatch.setenv("OPTISYNC_ENV", "prod")
    monkeypatch.setenv("BOOKING_SIGNING_SECRET", "a-real-secret-from-the-vault")
    settings = BookingSettings()
    assert settings.signing_secret.get_secret_value() != DEV_SECRET
    assert "a-real-secret" not in repr(settings)  # never logged


def test_dev_accepts_the_default_secret():
    assert ServiceSettings(OPTISYNC_ENV="dev").signing_secret.get_secret_value() == DEV_SECRET
