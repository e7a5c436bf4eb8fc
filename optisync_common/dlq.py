"""Dead letters: a message a consumer cannot handle goes to `<topic>.dlq` with everything
needed to replay it byte for byte; the consumer keeps going."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from aiokafka.structs import RecordMetadata

from optisync_common.kafka import EventPublisher
from optisync_common.metrics import EVENTS_DEAD_LETTERED
from schemas.envelope import new_envelope
from schemas.events.dlq import DeadLetter
from schemas.registry import dlq_topic_for


async def dead_letter(
    publisher: EventPublisher,
    *,
    service: str,
    region: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Iterable[tuple[str, bytes | None]],
    error: Exception,
    now: datetime,
) -> RecordMetadata:
    letter = DeadLetter.from_record(
        topic=topic,
        partition=partition,
        offset=offset,
        key=key,
        value=value,
        headers=headers,
        error=str(error),
        failed_at=now,
        consumer=service,
    )
    store_id = (key or b"unknown").decode("utf-8", "replace") or "unknown"
    envelope = new_envelope(
        letter,
        region=region,
        store_id=store_id,
        correlation_id=f"{topic}:{partition}:{offset}",
        occurred_at=now,
    )
    EVENTS_DEAD_LETTERED.labels(service, topic).inc()
    return await publisher.publish(envelope, topic=dlq_topic_for(topic), key=key)
