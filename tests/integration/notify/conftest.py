"""Notify integration fixtures: real webhook receiver and SMTP server, the worker in-process
(own consumer group starting at the end, a movable clock) and the notify API app."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from deploy.local.infra import Endpoints
from optisync_common.resources import Resources, open_resources
from services.notify.adapters.storage import DueIndex, NotifyRepository
from services.notify.adapters.worker import NotifyWorker
from services.notify.entrypoints.http import build_app
from services.notify.settings import NotifySettings
from tests.integration.notify.helpers import MovableClock, SmtpServer, WebhookReceiver

SECRET = "notify-itest-secret-0123456789"


@pytest.fixture(scope="session")
def notify_settings(endpoints: Endpoints) -> NotifySettings:
    return endpoints.settings(
        NotifySettings,
        environment="test",
        signing_secret=SECRET,
        adapter_timeout_s=2.0,
        lease_s=5.0,
        max_attempts=3,
        backoff_base_s=0.05,
        backoff_cap_s=0.2,
        breaker_failures=1000,  # retries, not the breaker, are under test here
        feedback_delay_s=0.0,
        poll_interval_s=0.1,
        consumer_group=f"notify-itest-{uuid.uuid4().hex[:8]}",
        consumer_offset_reset="latest",
    )


@pytest.fixture(scope="session")
async def receiver() -> AsyncIterator[WebhookReceiver]:
    hook = WebhookReceiver(SECRET)
    await hook.start()
    yield hook
    await hook.stop()


@pytest.fixture(scope="session")
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
async def resources(notify_settings: NotifySettings) -> AsyncIterator[Resources]:
    async with open_resources(notify_settings) as res:
        await res.wait_for_kafka()
        yield res


@pytest.fixture(scope="session")
def repo(resources: Resources, notify_settings: NotifySettings) -> NotifyRepository:
    assert resources.redis is not None
    return NotifyRepository(
        resources.db, DueIndex.of(resources.redis, notify_settings.redis_prefix)
    )


@pytest.fixture(scope="module")
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture(scope="module")
async def worker(
    notify_settings: NotifySettings, resources: Resources, clock: MovableClock
) -> AsyncIterator[NotifyWorker]:
    settings = notify_settings.model_copy(
        update={"consumer_group": f"notify-itest-{uuid.uuid4().hex[:8]}"}
    )
    instance = NotifyWorker(settings, clock=clock)
    await instance.start(resources)
    await instance.wait_assigned()
    yield instance
    await instance.stop()


@pytest.fixture
async def store(repo: NotifyRepository, receiver: WebhookReceiver, unique_id: str) -> str:
    """A store in Shanghai, zh-CN by default, whose chat channels go to the receiver."""
    store_id = f"nt-{unique_id}"
    await repo.upsert_store(
        store_id,
        timezone="Asia/Shanghai",
        locale="zh-CN",
        name="静安店",
        channels={"*": {"kind": "webhook", "url": receiver.url}},
    )
    await repo.upsert_exam_type(store_id, "standard", "标准验光")
    return store_id


@pytest.fixture(scope="module")
async def api(notify_settings: NotifySettings) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(notify_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
