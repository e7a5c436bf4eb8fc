"""A stream whose tasks cannot move says so: aiokafka swallows what a rebalance callback
raises, so without this the instance fetched on, its tasks standing still, and looked ready."""

from __future__ import annotations

import pytest
from aiokafka.structs import TopicPartition

from optisync_common.txstream import TransactionalStreamProcessor, _Listener


def _stream() -> TransactionalStreamProcessor:
    return TransactionalStreamProcessor(
        bootstrap="127.0.0.1:1", app_id="unit", inputs=["in"], tables=["t"], partitions=2,
        handler=lambda partition, records, tables: [],
    )  # fmt: skip


async def test_a_failed_assignment_marks_the_stream_failed(monkeypatch):
    stream = _stream()

    async def restore_fails(partitions: set[int]) -> None:
        raise TimeoutError("end_offsets timed out: the broker away for a moment")

    monkeypatch.setattr(stream, "_assign", restore_fails)
    assert not stream.failed
    with pytest.raises(TimeoutError):
        await _Listener(stream).on_partitions_assigned([TopicPartition("in", 0)])
    assert stream.failed and not stream.ready


async def test_a_good_assignment_leaves_the_stream_alive(monkeypatch):
    stream = _stream()
    assigned: list[set[int]] = []

    async def assign(partitions: set[int]) -> None:
        assigned.append(partitions)

    monkeypatch.setattr(stream, "_assign", assign)
    await _Listener(stream).on_partitions_assigned([TopicPartition("in", 1)])
    assert assigned == [{1}] and not stream.failed
