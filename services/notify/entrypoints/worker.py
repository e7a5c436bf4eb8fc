"""`python -m services.notify.entrypoints.worker`: turns booking events into
notifications. Skeleton: consumes and logs; delivery lands with the notify issue."""

from __future__ import annotations

from typing import Any

from optisync_common.logging import get_logger
from optisync_common.streams import StreamWorker
from schemas.registry import BOOKING_EVENTS
from services.notify.settings import get_settings

log = get_logger(__name__)
settings = get_settings()
worker = StreamWorker(
    settings, "optisync-notify", web_port=settings.worker_port, mongo=True, redis=True
)
app = worker.app

booking_events = app.topic(BOOKING_EVENTS, key_serializer="raw", value_serializer="raw")


@app.agent(booking_events)
async def notify(stream: Any) -> None:
    async for _, envelope in worker.decoded(stream):
        log.debug("booking_event", type=envelope.type, store_id=envelope.store_id)


if __name__ == "__main__":
    worker.serve(title="OptiSync notify worker")
