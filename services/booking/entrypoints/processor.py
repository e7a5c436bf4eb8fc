"""`python -m services.booking.entrypoints.processor`: the availability processor.

Single writer per store: one faust agent consumes `booking.commands.v1` and `roster.events.v1`
(both keyed by store_id, both 12 partitions, so a store's commands and roster changes land on
the same partition number and the same worker). State lives in changelog-backed tables
co-partitioned with them; outputs go through faust's producer, which faust flushes before it
commits the input offsets, inside one transaction (exactly-once processing).
"""

from __future__ import annotations

from typing import Any

from optisync_common.clock import SystemClock
from optisync_common.dlq import dead_letter
from optisync_common.logging import bind_event, get_logger
from optisync_common.streams import StreamWorker
from schemas.registry import (
    AVAILABILITY,
    BOOKING_COMMANDS,
    BOOKING_EVENTS,
    BOOKING_FACTS,
    ROSTER_EVENTS,
    topic,
)
from schemas.serde import encode
from services.booking.adapters.processor import AvailabilityProcessor, ProcessorTables
from services.booking.settings import get_settings

log = get_logger(__name__)
settings = get_settings()
PARTITIONS = topic(BOOKING_COMMANDS).partitions
worker = StreamWorker(
    settings,
    "optisync-booking-processor",
    web_port=settings.worker_port,
    # Table changelogs, output events and input offsets commit in one Kafka transaction per
    # partition: a crash mid-command leaves no half-applied state and no visible output.
    processing_guarantee="exactly_once",
    # Consumers read committed only, so the commit interval is the decision latency floor.
    broker_commit_interval=0.02,
    # A crashed processor's partitions move to a live one after this long.
    broker_session_timeout=10.0,
    broker_heartbeat_interval=2.0,
)
app = worker.app
clock = SystemClock()


def _table(name: str) -> Any:
    # Keys and values are JSON (faust's default serializer for untyped tables).
    return app.Table(name, partitions=PARTITIONS)


tables = ProcessorTables(
    configs=_table("store-configs"),
    days=_table("store-days"),
    bookings=_table("bookings"),
    idem=_table("idempotency"),
)
processor = AvailabilityProcessor(tables, region=settings.region)

inputs = app.topic(BOOKING_COMMANDS, ROSTER_EVENTS, key_serializer="raw", value_serializer="raw")
outputs = {
    name: app.topic(name, key_serializer="raw", value_serializer="raw")
    for name in (BOOKING_EVENTS, BOOKING_FACTS, AVAILABILITY)
}


@app.agent(inputs)
async def decide(stream: Any) -> None:
    async for event, envelope in worker.decoded(stream):
        with bind_event(event_id=str(envelope.event_id), correlation_id=envelope.correlation_id):
            try:
                results = processor.handle(envelope, clock.now())
            except Exception as exc:  # a bug must not stall the store's partition
                log.exception("processor_failed", type=envelope.type)
                message = event.message
                assert worker.resources is not None
                await dead_letter(
                    worker.resources.publisher,
                    service="booking-processor",
                    region=settings.region,
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                    key=message.key,
                    value=message.value,
                    headers=list(message.headers or []),
                    error=exc,
                    now=clock.now(),
                )
                continue
            for result in results:
                encoded = encode(result)
                await outputs[encoded.topic].send(
                    key=encoded.key, value=encoded.value, headers=encoded.headers
                )


if __name__ == "__main__":
    worker.serve(title="OptiSync booking processor")
