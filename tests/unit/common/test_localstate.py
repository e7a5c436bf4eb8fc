"""The processor's local RocksDB copy of its changelog (a real embedded RocksDB in a temp dir)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from optisync_common.localstate import MAX_CHECKPOINT_AGE_S, Checkpoint, LocalState


def _open(directory: Path) -> LocalState:
    state = LocalState.open(directory)
    assert state is not None
    return state


def _checkpoint(offset: int, at: float = 1000.0) -> Checkpoint:
    return Checkpoint("cluster-a", "app-state-changelog", offset, at)


def test_records_and_checkpoint_survive_a_reopen(tmp_path: Path) -> None:
    state = _open(tmp_path)
    state.save(
        3, [(b"days/s1|2031-01-06", b'{"busy":[]}'), (b"_positions/in", b"7")], _checkpoint(5)
    )
    state.save(3, [(b"days/s1|2031-01-06", b'{"busy":[1]}'), (b"idem/x", b"1")], _checkpoint(9))
    state.save(3, [(b"idem/x", None)], _checkpoint(12))  # a tombstone deletes
    state.save(4, [(b"days/s2|2031-01-06", b"{}")], _checkpoint(2))
    state.close()

    again = _open(tmp_path)
    assert dict(again.records(3)) == {
        b"days/s1|2031-01-06": b'{"busy":[1]}',
        b"_positions/in": b"7",
    }
    assert dict(again.records(4)) == {b"days/s2|2031-01-06": b"{}"}
    assert again.checkpoint(3) == _checkpoint(12)
    assert again.checkpoint(4) == _checkpoint(2)
    assert again.checkpoint(5) is None and list(again.records(5)) == []
    again.close()


def test_replace_drops_only_that_partitions_records(tmp_path: Path) -> None:
    state = _open(tmp_path)
    state.save(1, [(b"a/1", b"1"), (b"a/2", b"2")], _checkpoint(3))
    state.save(2, [(b"a/9", b"9")], _checkpoint(4))
    state.save(1, [(b"a/3", b"3")], _checkpoint(8), replace=True)
    assert dict(state.records(1)) == {b"a/3": b"3"}
    assert dict(state.records(2)) == {b"a/9": b"9"}
    state.close()


def test_instances_on_one_host_get_their_own_slot(tmp_path: Path) -> None:
    first, second = _open(tmp_path), _open(tmp_path)
    try:
        assert first.path != second.path  # RocksDB's lock keeps them apart
        first.save(0, [(b"a/1", b"first")], _checkpoint(1))
        assert list(second.records(0)) == []
    finally:
        first.close()
        second.close()
    assert _open(tmp_path).path == first.path  # a restart finds its slot free again


@pytest.mark.parametrize(
    ("cluster", "topic", "first", "end", "age", "usable"),
    [
        ("cluster-a", "app-state-changelog", 0, 20, 60, True),
        ("cluster-a", "app-state-changelog", 10, 10, 60, True),  # exactly at both ends
        ("cluster-b", "app-state-changelog", 0, 20, 60, False),  # another (reformatted) cluster
        ("cluster-a", "other-state-changelog", 0, 20, 60, False),
        ("cluster-a", "app-state-changelog", 11, 20, 60, False),  # the log no longer has it all
        ("cluster-a", "app-state-changelog", 0, 9, 60, False),  # the topic shrank: recreated
        ("cluster-a", "app-state-changelog", 0, 20, MAX_CHECKPOINT_AGE_S, False),  # tombstones
        ("cluster-a", "app-state-changelog", 0, 20, -60, False),  # written in the future
    ],
)
def test_a_checkpoint_is_trusted_only_for_the_same_log(
    cluster: str, topic: str, first: int, end: int, age: float, usable: bool
) -> None:
    checkpoint = _checkpoint(10, at=50_000.0)
    assert checkpoint.usable(cluster, topic, first, end, now=50_000.0 + age) is usable


def test_without_rocksdict_there_is_no_local_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("optisync_common.localstate.available", lambda: False)
    assert LocalState.open(tmp_path) is None


@pytest.mark.parametrize(
    ("kept", "current", "usable"),
    [
        ("id-1", "id-1", True),
        ("id-1", "id-2", False),  # the topic was deleted and created again under its name
        ("", "id-2", True),  # a copy from before ids: by name and offsets, as it was
        ("id-1", "", True),  # a broker that cannot tell
    ],
)
def test_a_checkpoint_is_trusted_only_for_the_same_topic_id(
    kept: str, current: str, usable: bool
) -> None:
    checkpoint = dataclasses.replace(_checkpoint(10, at=50_000.0), topic_id=kept)
    assert checkpoint.usable("cluster-a", "app-state-changelog", 0, 20, 50_060.0, current) is usable
