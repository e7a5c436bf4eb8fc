from __future__ import annotations

import contextlib

import httpx
from aiokafka.admin import AIOKafkaAdminClient

from optisync_common.http import create_app
from optisync_common.settings import ServiceSettings
from optisync_common.topics import _apply, apply_registry
from schemas.registry import load_registry


async def test_applying_the_registry_twice_changes_nothing(endpoints):
    await apply_registry(endpoints.kafka_bootstrap)
    report = await apply_registry(endpoints.kafka_bootstrap)
    assert report.created == [] and report.partitions_added == [] and report.configs_updated == []
    assert sorted(report.unchanged) == sorted(load_registry())


async def test_every_registered_topic_exists_with_its_partitions(endpoints):
    admin = AIOKafkaAdminClient(bootstrap_servers=endpoints.kafka_bootstrap)
    await admin.start()
    try:
        specs = load_registry()
        described = await admin.describe_topics(list(specs))
    finally:
        await admin.close()
    have = {t["topic"]: len(t["partitions"]) for t in described}
    assert have == {name: spec.partitions for name, spec in specs.items()}


async def test_registry_growth_and_config_drift_are_applied(endpoints, unique_id):
    import dataclasses

    base = load_registry()["notify.deliveries.v1"]
    spec = dataclasses.replace(base, name=f"itest.growth{unique_id}.v1", partitions=2)
    admin = AIOKafkaAdminClient(bootstrap_servers=endpoints.kafka_bootstrap)
    await admin.start()
    try:
        created = await _apply(admin, [spec], 1, print)
        assert created.created == [spec.name]
        grown_spec = dataclasses.replace(spec, partitions=4, retention_ms=3_600_000)
        grown = await _apply(admin, [grown_spec], 1, print)
        assert grown.partitions_added == [spec.name]
        assert grown.configs_updated == [spec.name]
        fewer = dataclasses.replace(grown_spec, partitions=2)
        shrink = await _apply(admin, [fewer], 1, print)  # Kafka cannot shrink: warn, keep 4
        assert shrink.warnings and shrink.partitions_added == [] and not shrink.configs_updated
        again = await _apply(admin, [grown_spec], 1, print)
        assert again.unchanged == [spec.name]
    finally:
        with contextlib.suppress(Exception):
            await admin.delete_topics([spec.name])
        await admin.close()


async def _readyz(settings: ServiceSettings) -> httpx.Response:
    app = create_app(settings, title="probe", description="probe")
    async with app.router.lifespan_context(app):
        await app.state.resources.wait_for_kafka(30)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/readyz")


async def test_readyz_is_200_against_the_real_servers(settings):
    resp = await _readyz(settings)
    assert resp.status_code == 200, resp.text
    assert resp.json()["checks"] == {"kafka": "ok", "mongodb": "ok", "redis": "ok"}


async def test_readyz_is_503_naming_the_dependency_that_is_down(settings):
    broken = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    resp = await _readyz(broken)
    assert resp.status_code == 503
    checks = resp.json()["checks"]
    assert checks["kafka"] == "ok" and checks["mongodb"] == "ok"
    assert checks["redis"].startswith("failed")
