"""The stream loop's pure parts: the changelog-backed table records exactly what a
transaction must write to its changelog, and outputs are placed as the producer places them."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner

from optisync_common.txstream import (
    MAX_RECORD_BYTES,
    ChangelogTable,
    RecordTooLarge,
    all_or_nothing,
    default_partition,
)


def test_only_assignments_and_deletions_are_changes():
    table = ChangelogTable()
    table["a"] = {"n": 1}
    table["b"] = {"n": 2}
    assert table.take_changes() == [("a", {"n": 1}), ("b", {"n": 2})]
    assert table.take_changes() == []
    del table["a"]
    table["b"] = {"n": 3}
    assert table.take_changes() == [("a", None), ("b", {"n": 3})]
    assert dict(table) == {"b": {"n": 3}}


def test_restoring_from_the_changelog_is_not_a_change():
    table = ChangelogTable()
    table.restore("a", {"n": 1})
    table.restore("b", {"n": 2})
    table.restore("a", None)  # tombstone
    assert dict(table) == {"b": {"n": 2}}
    assert table.take_changes() == []


def test_set_then_delete_in_one_batch_writes_a_tombstone():
    table = ChangelogTable()
    table.restore("a", 1)
    table["a"] = 2
    del table["a"]
    assert table.take_changes() == [("a", None)]


def test_outputs_without_a_partition_go_where_the_producer_would_put_them():
    """`default_partition` is the producer's own partitioner (murmur2, as the Java client)."""
    partitions = list(range(12))
    for i in range(500):
        key = f"store-{i}".encode()
        assert default_partition(key, partitions) == DefaultPartitioner()(key, partitions, [])
    assert default_partition(None, partitions) in partitions


def test_all_or_nothing_undoes_every_change_of_a_failed_step_and_keeps_a_good_one():
    people, counts = ChangelogTable(), ChangelogTable()
    people.restore("kept", {"n": 1})
    people.restore("gone", {"n": 2})
    people["changed_before"] = {"n": 3}  # an earlier record's change, not yet committed
    tables = {"people": people, "counts": counts}

    def handle_halfway() -> None:
        with all_or_nothing(tables):
            people["kept"] = {"n": 10}
            people["changed_before"] = {"n": 30}
            people["new"] = {"n": 4}
            del people["gone"]
            counts["c"] = 1
            raise RuntimeError("the record's handler failed halfway")

    with pytest.raises(RuntimeError):
        handle_halfway()
    assert dict(people) == {"kept": {"n": 1}, "gone": {"n": 2}, "changed_before": {"n": 3}}
    assert dict(counts) == {}
    assert people.take_changes() == [("changed_before", {"n": 3})]
    assert counts.take_changes() == []

    with all_or_nothing(tables):
        people["new"] = {"n": 4}
    people["later"] = {"n": 5}  # outside: nothing remembered, nothing undone
    assert people.take_changes() == [("later", {"n": 5}), ("new", {"n": 4})]


def test_a_change_too_large_for_the_changelog_is_refused_and_undone():
    """A record over the broker's limit would fail every transaction of its group from then
    on: the change that would write it fails instead, and leaves nothing behind."""
    table = ChangelogTable()
    table.restore("small", {"n": 1})

    def grow_too_large() -> None:
        with all_or_nothing({"t": table}):
            table["small"] = {"n": 2}
            table["big"] = {"blob": "x" * MAX_RECORD_BYTES}

    with pytest.raises(RecordTooLarge, match="t/big"):
        grow_too_large()
    assert dict(table) == {"small": {"n": 1}} and table.take_changes() == []
