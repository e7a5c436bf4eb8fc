"""The availability processor's own work per command, without Kafka: decode, decide, the
availability view, encoding the outputs and the changelog records, as one task's batch does.

The store `make bench` seeds (`bench.run.roster`: 4 optometrists, 08:00-20:00) takes
two bookings per quarter hour until its days are full, in batches of `batch` commands; CPU
time per command is what the rest of the booking path cannot hide (the processor is one
Python process, deciding one task's batch at a time).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord

from bench.run import FIRST_DAY, TZ, roster
from optisync_common.clock import FixedClock
from optisync_common.txstream import ChangelogTable
from schemas.envelope import Envelope, new_envelope
from schemas.events.base import EventPayload
from schemas.events.booking import Customer, RequestBooking
from schemas.registry import BOOKING_COMMANDS
from schemas.serde import H_EVENT_TYPE, encode
from services.booking.adapters.processor import AvailabilityProcessor, ProcessorTables
from services.booking.domain.calendar import zone
from services.booking.entrypoints.processor import TABLES, BatchDecider
from services.booking.settings import BookingSettings

STORE = "bench-decisions"
NOW = dt.datetime(2026, 12, 1, 6, 0, tzinfo=dt.UTC)
CONFIRMED = b"BookingConfirmed"


def _envelope(payload: EventPayload, n: int) -> Envelope[Any]:
    return new_envelope(
        payload, region="cn", store_id=STORE, correlation_id=f"c{n}", occurred_at=NOW
    )


def seeded_tables(days: int) -> dict[str, ChangelogTable]:
    """One task's tables holding the bench store (`STORE`) with `days` days of shifts."""
    plain = ProcessorTables({}, {}, {}, {}, {})
    processor = AvailabilityProcessor(plain, region="cn")
    for n, payload in enumerate(roster(STORE, days)):
        processor.handle(_envelope(payload, n), NOW)
    tables = {name: ChangelogTable() for name in TABLES}
    for name in TABLES:
        for key, value in getattr(plain, name).items():
            tables[name].restore(key, value)
    return tables


def booking_commands(days: int) -> list[ConsumerRecord[bytes, bytes]]:
    """Two requests per quarter hour of every day of `seeded_tables`: all of them fit."""
    records: list[ConsumerRecord[bytes, bytes]] = []
    for day in (FIRST_DAY + dt.timedelta(days=i) for i in range(days)):
        opening = dt.datetime.combine(day, dt.time(8, 0), zone(TZ))
        for quarter in range(46):  # 08:00 to 19:30 local: the last 30-minute exam ends at 20:00
            start = (opening + dt.timedelta(minutes=15 * quarter)).astimezone(dt.UTC)
            for _ in range(2):
                n = len(records)
                command = RequestBooking(
                    booking_id=f"b{n}", idempotency_key=f"k{n}", channel="web",
                    customer=Customer(customer_ref=f"c{n}"), exam_type="standard",
                    slot_start=start, requested_at=NOW,
                )  # fmt: skip
                message = encode(_envelope(command, n))
                records.append(ConsumerRecord(
                    BOOKING_COMMANDS, 0, n, 0, 0, message.key, message.value, None,
                    len(message.key or b""), len(message.value), list(message.headers),
                ))  # fmt: skip
    return records


def measure(batch: int, commands: int = 2000, warm_up: int = 300) -> dict[str, Any]:
    """CPU µs per command and output bytes per command, deciding `commands` bookings."""
    days = (warm_up + commands) // 92 + 1
    tables = seeded_tables(days)
    records = booking_commands(days)[: warm_up + commands]
    decider = BatchDecider(BookingSettings(environment="test"), FixedClock(NOW))

    def run(chunk: list[ConsumerRecord[bytes, bytes]]) -> tuple[int, int]:
        written = confirmed = 0
        for i in range(0, len(chunk), batch):
            outputs = decider(0, chunk[i : i + batch], tables)
            written += sum(len(o.value or b"") for o in outputs)
            confirmed += sum((H_EVENT_TYPE, CONFIRMED) in o.headers for o in outputs)
            for table in tables.values():  # what the transaction writes to the changelog
                written += sum(len(orjson.dumps(v)) for _, v in table.take_changes())
        return written, confirmed

    run(records[:warm_up])
    started = time.process_time()
    written, confirmed = run(records[warm_up:])
    cpu = time.process_time() - started
    return {
        "batch": batch,
        "commands": commands,
        "confirmed": confirmed,
        "cpu_us_per_command": round(cpu / commands * 1e6, 1),
        "bytes_per_command": round(written / commands),
    }
