"""The availability processor's own work per command, without Kafka: decode, decide, the
availability view, encoding the outputs and the changelog records, as one task's batch does.

A bench store as `make bench` seeds it (4 optometrists, 08:00-20:00, 15-minute grid) takes
two bookings per quarter hour until its days are full, in batches of `batch` commands; CPU
time per command is what the rest of the booking path cannot hide (the processor is one
Python process, deciding one task's batch at a time).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord

from optisync_common.clock import FixedClock
from optisync_common.txstream import ChangelogTable
from schemas.envelope import Envelope, new_envelope
from schemas.events.base import EventPayload
from schemas.events.booking import Customer, RequestBooking
from schemas.events.roster import (
    ExamTypeDefined,
    OptometristJoined,
    ShiftPublished,
    StoreRegistered,
)
from schemas.registry import BOOKING_COMMANDS
from schemas.serde import H_EVENT_TYPE, encode
from services.booking.adapters.processor import AvailabilityProcessor, ProcessorTables
from services.booking.entrypoints.processor import TABLES, BatchDecider
from services.booking.settings import BookingSettings

STORE = "bench-decisions"
OPTOMETRISTS = ("o1", "o2", "o3", "o4")
NOW = dt.datetime(2026, 12, 1, 6, 0, tzinfo=dt.UTC)
FIRST_DAY = dt.date(2026, 12, 7)
CONFIRMED = b"BookingConfirmed"


def _envelope(payload: EventPayload, n: int) -> Envelope[Any]:
    return new_envelope(
        payload, region="eu", store_id=STORE, correlation_id=f"c{n}", occurred_at=NOW
    )


def _roster(days: int) -> Iterator[EventPayload]:
    hours = {d: [{"open": "08:00", "close": "20:00"}] for d in range(7)}
    yield StoreRegistered(
        store_id=STORE, name="Bench", region="eu", timezone="Europe/Berlin",
        opening_hours=hours, slot_minutes=15,
    )  # fmt: skip
    yield ExamTypeDefined(
        code="standard", name="Standard", duration_minutes=30, required_skill="general"
    )
    for o in OPTOMETRISTS:
        yield OptometristJoined(
            optometrist_id=o, name=o, skills=["general"], home_store_id=STORE, store_ids=[STORE]
        )
    for day in (FIRST_DAY + dt.timedelta(days=i) for i in range(days)):
        for o in OPTOMETRISTS:
            yield ShiftPublished(
                shift_id=f"{o}-{day}", optometrist_id=o, store_id=STORE, date=day,
                start="08:00", end="20:00",
            )  # fmt: skip


def _seeded_tables(days: int) -> dict[str, ChangelogTable]:
    plain = ProcessorTables({}, {}, {}, {}, {})
    processor = AvailabilityProcessor(plain, region="eu")
    for n, payload in enumerate(_roster(days)):
        processor.handle(_envelope(payload, n), NOW)
    tables = {name: ChangelogTable() for name in TABLES}
    for name in TABLES:
        for key, value in getattr(plain, name).items():
            tables[name].restore(key, value)
    return tables


def _commands(days: int) -> list[ConsumerRecord[bytes, bytes]]:
    records: list[ConsumerRecord[bytes, bytes]] = []
    for day in (FIRST_DAY + dt.timedelta(days=i) for i in range(days)):
        for quarter in range(46):  # 08:00 to 19:30 local (07:00 UTC in December)
            start = dt.datetime.combine(day, dt.time(7, 0), dt.UTC)
            start += dt.timedelta(minutes=15 * quarter)
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
    tables = _seeded_tables(days)
    records = _commands(days)[: warm_up + commands]
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
