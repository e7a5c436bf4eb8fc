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


# What a dead letter keeps of a record's key, value and headers together. Base64 makes them a
# third larger, and the letter must stay under the broker's message limit (1 MiB): a record
# near that limit would otherwise give a letter the broker refuses, and its consumer would
# retry that record for ever.
KEPT_BYTES = 256 * 1024
STORE_ID_CHARS = 128  # the envelope's limit; a letter's store id is its record's key


def dead_letter_envelope(
    record: FailedRecord, *, service: str, region: str, error: Exception, now: datetime
) -> Envelope[DeadLetter]:
    """The dead letter of one record, to publish on `dlq_topic_for(record.topic)`. Whatever
    the record holds, this makes a letter (a consumer that cannot dead-letter a record is
    stuck on it): what does not fit in `KEPT_BYTES` is named in the error instead."""
    key, value, headers = record.key, record.value, list(record.headers or ())
    dropped = []
    if _size(key, value, headers) > KEPT_BYTES:
        dropped.append(f"value ({len(value or b'')} bytes)")
        value = None
    if _size(key, value, headers) > KEPT_BYTES:
        dropped.append(f"headers ({_size(None, None, headers)} bytes)")
        headers = []
    if _size(key, value, headers) > KEPT_BYTES:
        dropped.append(f"key ({len(key or b'')} bytes)")
        key = None
    note = f" [not kept, over {KEPT_BYTES} bytes: {', '.join(dropped)}]" if dropped else ""
    letter = DeadLetter.from_record(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=key,
        value=value,
        headers=headers,
        error=str(error)[: 8000 - len(note)] + note,
        failed_at=now,
        consumer=service,
    )
    store_id = (record.key or b"").decode("utf-8", "replace")[:STORE_ID_CHARS] or "unknown"
    EVENTS_DEAD_LETTERED.labels(service, record.topic).inc()
    return new_envelope(
        letter,
        region=region,
        store_id=store_id,
        correlation_id=f"{record.topic}:{record.partition}:{record.offset}",
        occurred_at=now,
    )


def _size(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]]
) -> int:
    return len(key or b"") + len(value or b"") + sum(len(n) + len(v or b"") for n, v in headers)


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
    # The key the letter kept (none if it was too large to keep).
    key = envelope.payload.original_key()
    return await publisher.publish(envelope, topic=dlq_topic_for(record.topic), key=key)
