"""The platform as `make up` runs it: every service as its own process against the real
servers, /readyz 200 everywhere, the demo chain loaded and consumed, and `down` leaving no
process of ours behind."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import httpx
import pytest

from deploy.local import infra, stack
from deploy.local.procs import ManagedProcess
from optisync_common.kafka import EventPublisher, make_consumer, make_producer
from optisync_common.settings import ServiceSettings
from schemas.envelope import new_envelope
from schemas.events.roster import ShiftPublished
from schemas.registry import BOOKING_COMMANDS, ROSTER_EVENTS, dlq_topic_for
from schemas.serde import decode
from services.roster.entrypoints.seed_demo import seed_demo_chain
from services.roster.settings import RosterSettings

pytestmark = pytest.mark.e2e


def _service_pids(cfg: infra.InfraConfig) -> list[int]:
    procs = [ManagedProcess(s.name, cfg.run_dir / "services" / s.name) for s in stack.SERVICES]
    return [pid for p in procs if (pid := p.pid()) is not None]


def test_every_service_is_ready_against_the_real_servers(running_stack):
    assert len(running_stack) == len(stack.SERVICES)
    for name, url in running_stack.items():
        resp = httpx.get(f"{url}/readyz", timeout=5)
        assert resp.status_code == 200, f"{name}: {resp.text}"
        checks = resp.json()["checks"]
        assert checks["kafka"] == "ok", name
        assert set(checks.values()) == {"ok"}, name
        assert httpx.get(f"{url}/healthz").json()["status"] == "ok", name
        assert "optisync_http_requests_total" in httpx.get(f"{url}/metrics").text
        assert httpx.get(f"{url}/openapi.json").json()["info"]["title"].startswith("OptiSync")


def test_demo_chain_is_served_by_the_roster_api(running_stack, endpoints):
    settings = endpoints.settings(RosterSettings, environment="test")
    asyncio.run(seed_demo_chain(settings))  # loads, or finds it loaded by an earlier run
    assert "already loaded" in asyncio.run(seed_demo_chain(settings))
    roster = running_stack["roster-api"]
    stores = httpx.get(f"{roster}/v1/stores").json()["items"]
    assert {"demo-sh-jingan", "demo-bj-sanlitun", "demo-sz-futian"} <= {
        s["store_id"] for s in stores
    }
    optometrists = httpx.get(f"{roster}/v1/stores/demo-sh-jingan/optometrists").json()["items"]
    assert len(optometrists) >= 2


def _consumed(metrics_url: str, topic: str, event_type: str) -> float:
    needle = (
        f'optisync_events_consumed_total{{service="booking",topic="{topic}",type="{event_type}"}}'
    )
    for line in httpx.get(metrics_url).text.splitlines():
        if line.startswith(needle):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_roster_events_reach_the_processor(running_stack, endpoints, unique_id):
    metrics_url = f"{running_stack['booking-processor']}/metrics"
    before = _consumed(metrics_url, ROSTER_EVENTS, "ShiftPublished")
    settings = endpoints.settings(ServiceSettings, service_name="e2e", environment="test")
    shift = ShiftPublished(
        shift_id=f"e2e-{unique_id}", optometrist_id="o1", store_id=f"e2e-{unique_id}",
        date=dt.date(2026, 12, 1), start="09:00", end="17:00",
    )  # fmt: skip
    envelope = new_envelope(
        shift, region="cn", store_id=shift.store_id, correlation_id=unique_id,
        occurred_at=dt.datetime.now(dt.UTC),
    )  # fmt: skip

    async def publish() -> None:
        producer = make_producer(settings)
        await producer.start()
        try:
            await EventPublisher(producer).publish(envelope)
        finally:
            await producer.stop()

    asyncio.run(publish())
    deadline = time.monotonic() + 30
    while (
        time.monotonic() < deadline
        and _consumed(metrics_url, ROSTER_EVENTS, "ShiftPublished") <= before
    ):
        time.sleep(0.25)
    assert _consumed(metrics_url, ROSTER_EVENTS, "ShiftPublished") == before + 1


def test_a_malformed_command_goes_to_the_dlq_and_the_processor_keeps_going(
    running_stack, endpoints, unique_id
):
    settings = endpoints.settings(ServiceSettings, service_name="e2e", environment="test")
    key = f"e2e-{unique_id}".encode()

    async def scenario() -> bytes:
        producer = make_producer(settings)
        consumer = make_consumer(
            settings, dlq_topic_for(BOOKING_COMMANDS), group_id=f"e2e-{unique_id}"
        )
        await producer.start()
        await consumer.start()
        try:
            await producer.send_and_wait(BOOKING_COMMANDS, key=key, value=b"\xff not json")
            async with asyncio.timeout(60):
                async for record in consumer:
                    if record.key == key:
                        return record.value
        finally:
            await consumer.stop()
            await producer.stop()
        raise AssertionError("no dead letter")

    letter = decode(asyncio.run(scenario())).payload
    assert letter.original_value() == b"\xff not json"  # type: ignore[attr-defined]
    resp = httpx.get(f"{running_stack['booking-processor']}/readyz")
    assert resp.status_code == 200


def test_stop_leaves_no_process_behind(running_stack, infra_config, restart_missing):
    pids = _service_pids(infra_config)
    assert len(pids) == len(stack.SERVICES)
    stack.stop_services(infra_config)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)]
    assert _service_pids(infra_config) == []
    restart_missing()  # the session's stack serves the tests that follow


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
