"""The stream loop's pure parts: the changelog-backed table records exactly what a
transaction must write to its changelog, and outputs are placed as the producer places them."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from optisync_common.txstream import ChangelogTable, default_partition


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
