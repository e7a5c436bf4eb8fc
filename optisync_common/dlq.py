"""Dead letters: a message a consumer cannot handle goes to `<topic>.dlq` with everything
needed to replay it byte for byte; the consumer keeps going."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from aiokafka.structs import RecordMetadata

from optisync_common.kafka import EventPublisher
from optisync_common.metrics import EVENTS_DEAD_LETTERED
from schemas.envelope import Envelope, new_envelope
from schemas.events.dlq import DeadLetter
from schemas.registry import dlq_topic_for


class FailedRecord(Protocol):
    """What a dead letter keeps of a consumed record (aiokafka's and faust's both fit)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]] | None: ...


def dead_letter_envelope(
    record: FailedRecord, *, service: str, region: str, error: Exception, now: datetime
) -> Envelope[DeadLetter]:
    """The dead letter of one record, to publish on `dlq_topic_for(record.topic)`."""
    letter = DeadLetter.from_record(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=list(record.headers or ()),
        error=str(error),
        failed_at=now,
        consumer=service,
    )
    store_id = (record.key or b"unknown").decode("utf-8", "replace") or "unknown"
    EVENTS_DEAD_LETTERED.labels(service, record.topic).inc()
    return new_envelope(
        letter,
        region=region,
        store_id=store_id,
        correlation_id=f"{record.topic}:{record.partition}:{record.offset}",
        occurred_at=now,
    )


async def dead_letter(
    publisher: EventPublisher,
    record: FailedRecord,
    *,
    service: str,
    region: str,
    error: Exception,
    now: datetime,
) -> RecordMetadata:
    envelope = dead_letter_envelope(record, service=service, region=region, error=error, now=now)
    return await publisher.publish(envelope, topic=dlq_topic_for(record.topic), key=record.key)
