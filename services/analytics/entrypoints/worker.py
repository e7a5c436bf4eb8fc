"""`python -m services.analytics.entrypoints.worker`: aggregates PII-free facts into
KPIs. Skeleton: consumes and logs; aggregation lands with the analytics issue."""

from __future__ import annotations

from typing import Any

from optisync_common.logging import get_logger
from optisync_common.streams import StreamWorker
from schemas.registry import BOOKING_FACTS
from services.analytics.settings import get_settings

log = get_logger(__name__)
settings = get_settings()
worker = StreamWorker(
    settings, "optisync-analytics", web_port=settings.worker_port, mongo=True, redis=True
)
app = worker.app

facts = app.topic(BOOKING_FACTS, key_serializer="raw", value_serializer="raw")


@app.agent(facts)
async def aggregate(stream: Any) -> None:
    async for _, envelope in worker.decoded(stream):
        log.debug("fact", type=envelope.type, store_id=envelope.store_id)


if __name__ == "__main__":
    worker.serve(title="OptiSync analytics worker")
