"""When a task group's transactions are spaced by `txn_interval_s`: only while its input rate,
measured over the last `RATE_WINDOW_S`, is at least `txn_interval_min_rate`."""

from __future__ import annotations

import time

import pytest

from optisync_common.txstream import RATE_WINDOW_S, TransactionalStreamProcessor, _Group


def _stream(interval_s: float, min_rate: float) -> TransactionalStreamProcessor:
    return TransactionalStreamProcessor(
        bootstrap="127.0.0.1:1", app_id="unit", inputs=["in"], tables=["t"], partitions=1,
        handler=lambda partition, records, tables: [], txn_interval_s=interval_s,
        txn_interval_min_rate=min_rate,
    )  # fmt: skip


def test_the_input_rate_counts_only_the_batches_of_the_window():
    group = _Group(index=0, producers=[])
    group.recent.extend([(10.0, 7), (10.05, 3), (10.08, 2)])
    assert group.input_rate(10.09) == pytest.approx(12 / RATE_WINDOW_S)
    assert group.input_rate(10.0 + RATE_WINDOW_S + 0.01) == pytest.approx(5 / RATE_WINDOW_S)
    assert list(group.recent) == [(10.05, 3), (10.08, 2)]  # what fell out is dropped
    assert group.input_rate(11.0) == 0.0 and not group.recent


def _busy_group(records_in_window: int) -> _Group:
    """A group whose last batch was taken just now and held `records_in_window` records."""
    group = _Group(index=0, producers=[])
    group.started_at = time.monotonic()
    group.recent.append((group.started_at, records_in_window))
    return group


def test_a_group_at_the_min_rate_waits_out_the_interval():
    stream = _stream(interval_s=0.5, min_rate=300)
    wait = stream._spacing(_busy_group(records_in_window=int(300 * RATE_WINDOW_S)))
    assert 0.4 < wait <= 0.5


def test_a_group_under_the_min_rate_does_not_wait():
    stream = _stream(interval_s=0.5, min_rate=300)
    assert stream._spacing(_busy_group(records_in_window=int(300 * RATE_WINDOW_S) - 1)) == 0.0


def test_min_rate_zero_always_spaces_and_interval_zero_never_does():
    assert _stream(interval_s=0.5, min_rate=0)._spacing(_busy_group(1)) > 0.4
    assert _stream(interval_s=0.5, min_rate=0)._spacing(_Group(index=0, producers=[])) < 0
    assert _stream(interval_s=0.0, min_rate=0)._spacing(_busy_group(1000)) == 0.0
