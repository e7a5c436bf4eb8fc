"""The projector tells how far behind it is by its batches' oldest records."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

from aiokafka import TopicPartition

from services.booking.adapters.projections import oldest_age_s


def _records(*timestamps_ms: int) -> list[SimpleNamespace]:
    return [SimpleNamespace(timestamp=ts) for ts in timestamps_ms]


def test_the_age_is_that_of_the_oldest_first_record_of_any_partition():
    now = dt.datetime.fromtimestamp(1_800_000_010, dt.UTC)
    batch = {
        TopicPartition("booking.events.v1", 0): _records(1_800_000_009_500, 1_800_000_009_900),
        TopicPartition("booking.events.v1", 1): _records(1_800_000_007_250),
        TopicPartition("availability.v1", 1): [],
    }
    assert oldest_age_s(batch, now) == 2.75  # type: ignore[arg-type]
