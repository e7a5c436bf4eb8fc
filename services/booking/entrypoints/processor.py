"""`python -m services.booking.entrypoints.processor`: the availability processor.

Single writer per store: it consumes `booking.commands.v1` and `roster.events.v1` (both keyed
by store_id, both 12 partitions, so a store's commands and roster changes land on the same
partition number and the same task). State lives in changelog-backed tables per task; each
batch's outputs, table changes and input offsets commit in one Kafka transaction
(`optisync_common.txstream`), so a crash leaves neither half-applied state nor visible output.
"""

from __future__ import annotations

import datetime as dt
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiokafka.structs import ConsumerRecord
from fastapi import FastAPI
from prometheus_client import Counter

from optisync_common.clock import Clock, SystemClock
from optisync_common.dlq import dead_letter_envelope
from optisync_common.http import create_app, serve
from optisync_common.logging import bind_event, get_logger
from optisync_common.metrics import count_consumed
from optisync_common.resources import NotReady, Resources
from optisync_common.txstream import (
    ChangelogTable,
    Output,
    Tables,
    TransactionalStreamProcessor,
    all_or_nothing,
    refuse_oversized,
)
from schemas.envelope import Envelope
from schemas.events.availability import availability_key
from schemas.registry import AVAILABILITY, BOOKING_COMMANDS, ROSTER_EVENTS, dlq_topic_for, topic
from schemas.serde import DecodeError, decode, encode
from services.booking.adapters.processor import AvailabilityProcessor, ProcessorTables
from services.booking.adapters.processor_retention import PastRetirement
from services.booking.adapters.processor_state import DecodedState
from services.booking.domain.waitlist import WaitlistLimits
from services.booking.settings import BookingSettings, get_settings

log = get_logger(__name__)
FORGOTTEN = Counter(
    "optisync_booking_processor_forgotten_total",
    "Store-days and bookings the processor forgot, their day past its retention",
)
APP_ID = "optisync-booking-processor"
TABLES = ("configs", "days", "bookings", "idem", "waitlist")


class BatchDecider:
    """Decodes a task's records, lets the availability processor decide each, and turns the
    results (and any record it cannot handle) into outputs of the task's transaction."""

    def __init__(self, settings: BookingSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self._decoded: dict[int, DecodedState] = {}  # per task (partition)
        self.waitlist_limits = WaitlistLimits(
            settings.waitlist_max_waiting, settings.waitlist_max_waiting_per_customer
        )
        self._retirements: dict[int, PastRetirement] = {}
        # Per task: its idempotency table, once put in write order (weakly: a task that moved
        # away must not keep its tables alive).
        self._idem_in_order: dict[int, weakref.ref[ChangelogTable]] = {}

    def __call__(
        self, partition: int, records: Sequence[ConsumerRecord[bytes, bytes]], tables: Tables
    ) -> list[Output]:
        processor = AvailabilityProcessor(
            ProcessorTables(**{name: tables[name] for name in TABLES}),
            region=self.settings.region,
            coalesce_views=True,
            waitlist_offers=self.settings.waitlist_offers,
            waitlist_hold_s=self.settings.waitlist_hold_s,
            waitlist_limits=self.waitlist_limits,
            decoded=self._decoded.setdefault(partition, DecodedState()),
        )
        ordered = self._idem_in_order.get(partition)
        if ordered is None or ordered() is not tables["idem"]:  # restored anew
            # Expiry stops at the first live record, so the records must be in write order.
            tables["idem"].reorder(key=lambda item: item[1]["at"])
            self._idem_in_order[partition] = weakref.ref(tables["idem"])
        now = self.clock.now()
        outputs = self._housekeeping(partition, processor, now)
        for record in records:
            outputs.extend(self._decide(processor, record, tables))
        outputs.extend(self._timed(processor, tables))
        return outputs + self._views(partition, processor)

    def _housekeeping(
        self, partition: int, processor: AvailabilityProcessor, now: dt.datetime
    ) -> list[Output]:
        """Expiry and retention; a bug here must not stall the task (they run again next
        batch)."""
        try:
            processor.expire_idempotency(now)
            return self._retire_past(partition, processor.t, now)
        except Exception:
            log.exception("processor_housekeeping_failed")
            return []

    def _views(self, partition: int, processor: AvailabilityProcessor) -> list[Output]:
        """The batch's availability views. A store's views go to the task's own partition
        number, like its events and facts (the key, store:date, would hash elsewhere): one
        partition fewer in each transaction. Each key still has one partition, so compaction
        keeps working. A bug here costs the batch's views (the decisions stand, and the
        day's next change publishes its view), never the task."""
        try:
            views = [encode(view) for view in processor.flush_views()]
        except Exception:
            log.exception("processor_views_failed")
            return []
        return [
            Output(e.topic, e.key, e.value, list(e.headers), partition=partition) for e in views
        ]

    def _retire_past(
        self, partition: int, tables: ProcessorTables, now: dt.datetime
    ) -> list[Output]:
        """Forget what is past the retention; tombstones for the forgotten days' views."""
        retirement = self._retirements.get(partition)
        if retirement is None:
            retirement = PastRetirement(self.settings.processor_retain_days)
            self._retirements[partition] = retirement
        forgotten = retirement.step(tables, now)
        if not forgotten:
            return []
        FORGOTTEN.inc(len(forgotten))
        return [
            Output(AVAILABILITY, availability_key(store, day).encode(), None, partition=partition)
            for store, day in forgotten.days
        ]

    def _decide(
        self,
        processor: AvailabilityProcessor,
        record: ConsumerRecord[bytes, bytes],
        tables: Tables,
    ) -> list[Output]:
        headers = list(record.headers or [])
        try:
            envelope = decode(record.value or b"", headers)
        except DecodeError as exc:
            return [self._dead_letter(record, exc)]
        count_consumed(self.settings.service_name, record.topic, envelope.type)
        with bind_event(event_id=str(envelope.event_id), correlation_id=envelope.correlation_id):
            try:
                # A record dead-lettered halfway leaves no table change behind: no booking
                # holding a slot without its decision or idempotency record.
                with all_or_nothing(tables):
                    results = processor.handle(envelope, self.clock.now())
                    encoded = [processor.encoded(result) for result in results]
                    # An output the broker would refuse fails its record here, not every
                    # transaction of the group from now on.
                    for message in encoded:
                        refuse_oversized(len(message.value or b""), f"a {message.topic} record")
            except Exception as exc:  # a bug must not stall the store's partition
                log.exception("processor_failed", type=envelope.type)
                return [self._dead_letter(record, exc), *self._answer_failed(processor, envelope)]
        return [Output(e.topic, e.key, e.value, list(e.headers)) for e in encoded]

    def _answer_failed(
        self, processor: AvailabilityProcessor, envelope: Envelope[Any]
    ) -> list[Output]:
        """A dead-lettered command's `internal_error` answer: else its request waited out
        its deadline and its status URL stayed pending until it expired."""
        try:
            answer = processor.failed_internally(envelope, self.clock.now())
            encoded = [encode(answer)] if answer is not None else []
        except Exception:
            log.exception("processor_failure_unanswered", type=envelope.type)
            return []
        return [Output(e.topic, e.key, e.value, list(e.headers)) for e in encoded]

    def _timed(self, processor: AvailabilityProcessor, tables: Tables) -> list[Output]:
        """What time alone decided (lapsed holds), store by store: a bug in one store's must
        not stall the task, keep the other stores' holds from lapsing, nor leave half its
        changes (the next batch tries that store again)."""
        now = self.clock.now()
        outputs: list[Output] = []
        for store_id in processor.due_stores(now):
            try:
                with all_or_nothing(tables):
                    encoded = [encode(result) for result in processor.tick_store(store_id, now)]
            except Exception:
                log.exception("processor_tick_failed", store_id=store_id)
                continue
            outputs += [Output(e.topic, e.key, e.value, list(e.headers)) for e in encoded]
        return outputs

    def _dead_letter(self, record: ConsumerRecord[bytes, bytes], error: Exception) -> Output:
        letter = dead_letter_envelope(
            record,
            service="booking-processor",
            region=self.settings.region,
            error=error,
            now=self.clock.now(),
        )
        key = letter.payload.original_key()  # the key the letter kept (none if too large)
        encoded = encode(letter, topic=dlq_topic_for(record.topic), key=key)
        return Output(encoded.topic, encoded.key, encoded.value, list(encoded.headers))


def build_app(settings: BookingSettings, clock: Clock | None = None) -> FastAPI:
    if topic(AVAILABILITY).partitions != topic(BOOKING_COMMANDS).partitions:
        raise RuntimeError("availability.v1 must have as many partitions as booking.commands.v1")
    stream = TransactionalStreamProcessor(
        bootstrap=settings.kafka_bootstrap,
        app_id=APP_ID,
        inputs=[BOOKING_COMMANDS, ROSTER_EVENTS],
        tables=TABLES,
        partitions=topic(BOOKING_COMMANDS).partitions,
        handler=BatchDecider(settings, clock or SystemClock()),
        # A crashed processor's partitions move to a live one after this long.
        session_timeout_ms=10000,
        punctuate_s=settings.processor_tick_s,
        task_groups=settings.processor_task_groups,
        linger_s=settings.hot_fetch_linger_ms / 1000,
        txn_interval_s=settings.processor_txn_interval_ms / 1000,
        txn_interval_min_rate=settings.processor_txn_interval_min_rate,
        # A local RocksDB copy of the tables: a restart replays only the changelog's tail.
        state_dir=Path(settings.state_dir),
    )

    async def start(api: FastAPI, resources: Resources) -> None:
        api.state.stream = stream
        await stream.start()

    async def stop(api: FastAPI, resources: Resources) -> None:
        await stream.stop()

    async def check_stream() -> None:
        if not stream.ready:
            raise NotReady("processor tasks not assigned and restored yet")

    async def check_stream_alive() -> None:
        if stream.failed:
            raise NotReady("a task group failed for good: restart the processor")

    worker_settings = settings.model_copy(update={"http_port": settings.worker_port})
    return create_app(
        worker_settings,
        title="OptiSync booking processor",
        description="Availability processor health, readiness and metrics.",
        mongo=False,
        redis=False,
        on_startup=[start],
        on_shutdown=[stop],
        extra_checks={"stream": check_stream},
        liveness_checks={"stream": check_stream_alive},
    )


# The processor's memory is its tables, which grow with every booking (until the retention
# sweep), so whatever lives through a young collection is mostly there to stay, and each
# middle-generation collection walks all that arrived since the previous one. With the other
# services' thresholds that came every ~8 min at 500 bookings/s and stopped the loop for 1.2 s
# (`optisync_gc_pause_seconds`); collecting the young generation every 5,000 allocations and
# the middle one every 10 of those kept the pauses to 4 ms and 29 ms on average (100 ms at
# most) over 150 s at 500/s and the closed loop after it. Full collections walk the whole
# tables: they stay as rare as elsewhere (every 250 million allocations, 5,000 x 10 x 5,000).
GC_THRESHOLDS = (5_000, 10, 5_000)

if __name__ == "__main__":
    settings = get_settings()
    serve(
        build_app(settings),
        settings.model_copy(update={"http_port": settings.worker_port}),
        gc_thresholds=GC_THRESHOLDS,
    )
