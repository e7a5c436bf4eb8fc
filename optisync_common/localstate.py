"""A stream processor's local state: a RocksDB copy (via rocksdict) of each task's changelog.

The changelog topic stays the source of truth; this copy only makes a restart cheap. Each
task partition holds the changelog's current records (key -> value, the last per key) and a
checkpoint: the changelog offset from which a replay brings the copy up to date. The copy is
written only after a transaction commits, records and checkpoint in one atomic write batch,
so it never holds state that Kafka does not; replaying from the checkpoint re-applies at most
the last transaction's records, which changes nothing (a changelog is last-write-wins).

A checkpoint is trusted only for the same cluster and topic, inside the partition's current
offsets, and while younger than `MAX_CHECKPOINT_AGE_S`: a compacted topic forgets tombstones
(`delete.retention.ms`), so an older copy could keep a key that was deleted.
Anything else means a full replay from the changelog, as without a local copy.

Where rocksdict does not install, `LocalState.open` returns None and the processor restores
every task from its changelog.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from optisync_common.logging import get_logger

log = get_logger(__name__)

# How long the state changelog keeps tombstones (its topic is created with this), and how long
# a checkpoint is trusted: well inside it, so no tombstone after a checkpoint is gone yet.
TOMBSTONE_RETENTION_MS = 24 * 3600 * 1000
MAX_CHECKPOINT_AGE_S = TOMBSTONE_RETENTION_MS / 1000 / 2
SLOTS = 16  # instances of one app that can keep local state side by side on one host
_DATA, _META = b"d", b"m"


@dataclass(frozen=True)
class Checkpoint:
    cluster_id: str
    topic: str
    offset: int  # where a replay of the partition resumes
    written_at: float  # epoch seconds
    # the topic's id (`optisync_common.topic_ids`): a topic recreated under the same name has
    # another, whatever its offsets. "" where unknown (an older copy, a broker without ids)
    topic_id: str = ""

    def usable(
        self, cluster_id: str, topic: str, first: int, end: int, now: float, topic_id: str = ""
    ) -> bool:
        """Whether this copy may stand in for the changelog up to `offset`, given the
        partition's current first and end offsets (and the topic's id, where both know it)."""
        return (
            self.cluster_id == cluster_id
            and self.topic == topic
            and (self.topic_id == topic_id or not (self.topic_id and topic_id))
            and first <= self.offset <= end
            and 0 <= now - self.written_at < MAX_CHECKPOINT_AGE_S
        )


def available() -> bool:
    return importlib.util.find_spec("rocksdict") is not None


class LocalState:
    """One RocksDB per processor instance, holding every task partition it has owned."""

    def __init__(self, db: Any, path: Path) -> None:
        self._db = db
        self.path = path

    @classmethod
    def open(cls, directory: Path) -> LocalState | None:
        """The first slot under `directory` no other live process holds (RocksDB's own lock
        tells), so instances sharing a host never share a copy; a restarted instance
        usually finds its old slot free again. None without rocksdict or a free slot."""
        if not available():
            return None
        import rocksdict

        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        for slot in range(SLOTS):
            path = directory / f"slot-{slot}"
            path.mkdir(parents=True, exist_ok=True)
            try:
                db = rocksdict.Rdict(str(path), options)
            except Exception as exc:  # held by another live instance: try the next slot
                log.info("local_state_slot_busy", path=str(path), error=str(exc))
                continue
            log.info("local_state_opened", path=str(path))
            return cls(db, path)
        log.warning("local_state_unavailable", directory=str(directory), slots=SLOTS)
        return None

    def close(self) -> None:
        self._db.close()

    def checkpoint(self, partition: int) -> Checkpoint | None:
        raw = self._db.get(_META + _partition(partition))
        if raw is None:
            return None
        try:
            return Checkpoint(**orjson.loads(raw))
        except (TypeError, ValueError):  # written by another version: not to be trusted
            return None

    def records(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        """The partition's changelog records (key, value), as of its checkpoint."""
        prefix = _DATA + _partition(partition)
        for key, value in self._db.items(from_key=prefix):
            if not key.startswith(prefix):
                return
            yield key[len(prefix) :], value

    def save(
        self,
        partition: int,
        records: Iterable[tuple[bytes, bytes | None]],
        checkpoint: Checkpoint,
        *,
        replace: bool = False,
    ) -> None:
        """Apply changelog records (None: a tombstone) and move the checkpoint, atomically;
        `replace` first drops what the partition held."""
        import rocksdict

        prefix = _DATA + _partition(partition)
        batch = rocksdict.WriteBatch(raw_mode=True)
        if replace:
            batch.delete_range(prefix, _DATA + _partition(partition + 1))
        for key, value in records:
            if value is None:
                batch.delete(prefix + key)
            else:
                batch.put(prefix + key, value)
        batch.put(_META + _partition(partition), orjson.dumps(dataclasses.asdict(checkpoint)))
        self._db.write(batch)


def _partition(partition: int) -> bytes:
    return partition.to_bytes(4, "big")  # fixed width: one partition's keys sort together
