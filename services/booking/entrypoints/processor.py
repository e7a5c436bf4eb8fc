"""`python -m services.booking.entrypoints.processor`: the availability processor.

Single writer per store: it consumes `booking.commands.v1` (keyed by store_id) and
`roster.events.v1` in partition order. This is the skeleton; decisions land with the booking
core issue.
"""

from __future__ import annotations

from typing import Any

from optisync_common.logging import get_logger
from optisync_common.streams import StreamWorker
from schemas.registry import BOOKING_COMMANDS, ROSTER_EVENTS
from services.booking.settings import get_settings

log = get_logger(__name__)
settings = get_settings()
worker = StreamWorker(
    settings, "optisync-booking-processor", web_port=settings.worker_port, mongo=True, redis=True
)
app = worker.app

commands = app.topic(BOOKING_COMMANDS, key_serializer="raw", value_serializer="raw")
roster_events = app.topic(ROSTER_EVENTS, key_serializer="raw", value_serializer="raw")


@app.agent(commands)
async def decide(stream: Any) -> None:
    async for _, envelope in worker.decoded(stream):
        log.info("command_received", type=envelope.type, store_id=envelope.store_id)


@app.agent(roster_events)
async def apply_roster(stream: Any) -> None:
    async for _, envelope in worker.decoded(stream):
        log.info("roster_event", type=envelope.type, store_id=envelope.store_id)


if __name__ == "__main__":
    worker.serve(title="OptiSync booking processor")
