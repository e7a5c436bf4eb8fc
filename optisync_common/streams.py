"""faust-streaming workers for the stream processors (booking processor, notify, analytics).

A worker is a faust app run inside a FastAPI lifespan under uvicorn (faust's ASGI integration),
so it has the same /healthz, /readyz and /metrics, settings and JSON logs as the HTTP services.
Its producer uses acks=all and idempotence even outside transactions.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
from fastapi import APIRouter, FastAPI
from faust.contrib.asgi import faust_app_running
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka

from optisync_common.dlq import dead_letter
from optisync_common.http import create_app, serve
from optisync_common.metrics import count_consumed
from optisync_common.resources import NotReady, Resources
from optisync_common.settings import ServiceSettings
from optisync_common.topics import ensure_internal_topics
from schemas.envelope import Envelope
from schemas.serde import DecodeError, decode


class IdempotentProducer(faust_aiokafka.Producer):
    """faust only enables idempotence inside transactions; we want it on every send."""

    def _settings_extra(self) -> dict[str, Any]:
        return {"acks": "all", "enable_idempotence": True}


class IdempotentTransport(faust_aiokafka.Transport):
    Producer = IdempotentProducer


TRANSPORTS.aliases["optisync"] = f"{__name__}:IdempotentTransport"


def table_store_url() -> str:
    """RocksDB (via rocksdict) where it installs, memory otherwise; changelogs back both."""
    return "rocksdb://" if importlib.util.find_spec("rocksdict") else "memory://"


class StreamWorker:
    """A faust app plus the service's own clients (Kafka producer, Mongo, Redis)."""

    def __init__(
        self,
        settings: ServiceSettings,
        app_id: str,
        *,
        web_port: int,
        mongo: bool = False,
        redis: bool = False,
        **faust_options: Any,
    ) -> None:
        self.settings = settings
        self.web_port = web_port
        self._mongo = mongo
        self._redis = redis
        options: dict[str, Any] = {
            "broker": f"optisync://{settings.kafka_bootstrap}",
            "store": table_store_url(),
            "web_enabled": False,  # our FastAPI app serves the worker's endpoints
            "producer_acks": -1,
            "consumer_auto_offset_reset": "earliest",
            "topic_replication_factor": 1,
            "topic_disable_leader": True,
            "datadir": f"{settings.state_dir}/{app_id}",
        }
        options.update(faust_options)
        Path(options["datadir"]).parent.mkdir(parents=True, exist_ok=True)
        self.app = faust.App(app_id, **options)
        self.resources: Resources | None = None
        self._running = False

    def http_app(self, *, title: str, routers: Sequence[APIRouter] = ()) -> FastAPI:
        exit_stack = contextlib.AsyncExitStack()

        async def start(api: FastAPI, resources: Resources) -> None:
            self.resources = resources
            await exit_stack.enter_async_context(self._running_faust())

        async def stop(api: FastAPI, resources: Resources) -> None:
            await exit_stack.aclose()

        worker_settings = self.settings.model_copy(update={"http_port": self.web_port})
        api = create_app(
            worker_settings,
            title=title,
            description="Stream worker (faust-streaming) health, readiness and metrics.",
            routers=routers,
            mongo=self._mongo,
            redis=self._redis,
            on_startup=[start],
            on_shutdown=[stop],
            extra_checks={"stream": self._check_running},
        )
        return api

    async def _declare_changelogs(self) -> None:
        changelogs = [
            (table.changelog_topic.get_topic_name(), table.partitions or 1, {
                "cleanup.policy": "compact", "min.compaction.lag.ms": "60000",
            })
            for table in self.app.tables.values()
        ]  # fmt: skip
        await ensure_internal_topics(self.settings.kafka_bootstrap, changelogs)

    @contextlib.asynccontextmanager
    async def _running_faust(self) -> AsyncIterator[None]:
        await self._declare_changelogs()
        async with faust_app_running(self.app, stop_timeout=30):
            self._running = True
            try:
                yield
            finally:
                self._running = False

    async def _check_running(self) -> None:
        if not self._running or self.app.should_stop:
            raise NotReady("stream app is not running")

    def serve(self, *, title: str, routers: Sequence[APIRouter] = ()) -> None:
        api = self.http_app(title=title, routers=routers)
        serve(api, self.settings.model_copy(update={"http_port": self.web_port}))

    async def decoded(self, stream: Any) -> AsyncIterator[tuple[Any, Envelope[Any]]]:
        """Yield `(event, envelope)` from a raw-bytes stream; undecodable messages go to the
        topic's DLQ (and are acknowledged) so one bad message never stalls a partition."""
        async for event in stream.events():
            message = event.message
            headers = list(message.headers or [])
            try:
                envelope = decode(event.value, headers)
            except DecodeError as exc:
                if self.resources is None:
                    raise NotReady("resources not open") from exc
                await dead_letter(
                    self.resources.publisher,
                    message,
                    service=self.settings.service_name,
                    region=self.settings.region,
                    error=exc,
                    now=datetime.now(UTC),
                )
                continue
            count_consumed(self.settings.service_name, message.topic, envelope.type)
            yield event, envelope
