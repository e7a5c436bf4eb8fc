"""`python -m services.notify.entrypoints.worker`: turns booking events into notifications,
sends due reminders and retries, and routes inbound customer messages.

A plain aiokafka consumer group (not a faust agent): handled records are committed after their
notifications are queued, so a crash redelivers and the outbox absorbs the duplicates."""

from __future__ import annotations

from fastapi import FastAPI

from optisync_common.http import create_app, serve
from optisync_common.resources import Resources
from services.notify.adapters.worker import NotifyWorker
from services.notify.settings import NotifySettings, get_settings


def build_app(settings: NotifySettings, worker: NotifyWorker | None = None) -> FastAPI:
    worker = worker or NotifyWorker(settings)

    async def start(app: FastAPI, resources: Resources) -> None:
        app.state.worker = worker
        await worker.start(resources)

    async def stop(app: FastAPI, resources: Resources) -> None:
        await worker.stop()

    return create_app(
        settings.model_copy(update={"http_port": settings.worker_port}),
        title="OptiSync notify worker",
        description="Booking events to notifications, reminders, inbound message routing.",
        on_startup=[start],
        on_shutdown=[stop],
        extra_checks={"worker": worker.check},
    )


if __name__ == "__main__":
    settings = get_settings()
    serve(build_app(settings), settings.model_copy(update={"http_port": settings.worker_port}))
