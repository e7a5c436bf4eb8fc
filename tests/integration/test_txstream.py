"""The exactly-once stream loop against the real broker: a transaction that fails after its
outputs were sent is aborted, the task rebuilds its table from the changelog and re-reads its
input from the committed offset, so every input counts once, in the table and in the output."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.conn import AIOKafkaConnection
from aiokafka.structs import ConsumerRecord
from prometheus_client import REGISTRY

from optisync_common.kafka import make_consumer, make_producer
from optisync_common.localstate import LocalState
from optisync_common.settings import ServiceSettings
from optisync_common.topics import ensure_internal_topics
from optisync_common.txstream import (
    COMMIT_SEND_TURNS,
    Output,
    Tables,
    TransactionalStreamProcessor,
    default_partition,
)

from .test_topic_ids import recreate_topic

INPUTS = 30
FORGET = b"forget"  # an input that deletes its key's count


def counting(output_topic: str):
    def handler(
        partition: int, records: Sequence[ConsumerRecord[bytes, bytes]], tables: Tables
    ) -> list[Output]:
        counts = tables["counts"]
        outputs = []
        for record in records:
            key = (record.key or b"").decode()
            if record.value == FORGET:
                del counts[key]
                continue
            counts[key] = counts.get(key, 0) + 1
            outputs.append(Output(output_topic, record.key, record.value))
        return outputs

    return handler


@pytest.mark.parametrize("local_copy", [False, True], ids=["changelog", "local-copy"])
async def test_a_failed_transaction_is_redone_once_from_committed_state(
    settings, unique_id, tmp_path, local_copy
):
    state_dir = tmp_path if local_copy else None
    stream, source, sink = await _counting_stream(settings, f"itest-tx-{unique_id}", state_dir)
    failures = 0
    produce = stream._produce

    async def fail_the_second_transaction(group, producer, outputs, offsets):
        nonlocal failures
        if stream_commits[0] == 1 and failures == 0:
            failures += 1
            await producer.begin_transaction()
            for o in outputs:  # sent, then abandoned: a reader must never see these
                await producer.send(o.topic, o.value, key=o.key)
            raise RuntimeError("injected: the transaction failed")
        writes = await produce(group, producer, outputs, offsets)
        stream_commits[0] += 1
        return writes

    stream_commits = [0]
    stream._produce = fail_the_second_transaction  # type: ignore[method-assign]

    async def after(i: int) -> None:
        if i == 5:  # the first transaction commits before the rest arrive
            await _until(lambda: stream_commits[0] == 1)

    seen, counts = await _feed_and_count(settings, stream, source, sink, after)
    assert failures == 1
    assert sorted(seen) == sorted(f"v{i}" for i in range(INPUTS))  # each once, none aborted
    assert counts == {"k0": 10, "k1": 10, "k2": 10}

    # A fresh instance restores the same table (from the changelog, or the local copy).
    again, _, _ = await _counting_stream(settings, f"itest-tx-{unique_id}", state_dir)
    await again.start()
    try:
        await _until(lambda: again.ready)
        assert _counts(again) == counts
    finally:
        await again.stop()


async def test_a_restart_loads_the_local_copy_and_replays_only_what_it_lacks(
    settings, unique_id, tmp_path
):
    """With a state dir, a restarted instance takes its tables from the local RocksDB copy
    and reads only the changelog's tail; a copy left behind by another instance's work
    catches up from its checkpoint, so the counts are the changelog's, never the copy's."""
    app_id = f"itest-tx-local-{unique_id}"
    first, source, sink = await _counting_stream(settings, app_id, tmp_path)
    _, counts = await _feed_and_count(settings, first, source, sink, _no_wait)
    assert counts == {"k0": 10, "k1": 10, "k2": 10}

    again, _, _ = await _counting_stream(settings, app_id, tmp_path)
    loaded = await _restored_counts(again)
    assert loaded.counts == counts
    assert loaded.local == 5  # three counts, the input position and the writers' layout
    assert loaded.changelog <= 4  # at most the last transaction's records, read again

    # Another instance, without a local copy, goes on counting; ours falls behind.
    elsewhere, _, _ = await _counting_stream(settings, app_id)
    await _feed_and_count(settings, elsewhere, source, sink, _no_wait, first=INPUTS)
    behind, _, _ = await _counting_stream(settings, app_id, tmp_path)
    caught_up = await _restored_counts(behind)
    assert caught_up.counts == {"k0": 20, "k1": 20, "k2": 20}
    assert caught_up.local == 5 and caught_up.changelog > 0


async def test_commits_the_copy_never_got_are_replayed_from_the_changelog(
    settings, unique_id, tmp_path
):
    """The copy is written every `local_flush_s`: a process that dies in between leaves it
    behind the changelog, and the next start replays what it lacks from its checkpoint."""
    app_id = f"itest-tx-lag-{unique_id}"
    source, sink = f"{app_id}-in", f"{app_id}-out"
    await ensure_internal_topics(settings.kafka_bootstrap, [(source, 1, {}), (sink, 1, {})])
    dying = TransactionalStreamProcessor(
        bootstrap=settings.kafka_bootstrap, app_id=app_id, inputs=[source], tables=["counts"],
        partitions=1, handler=counting(sink), state_dir=tmp_path, local_flush_s=3600,
    )  # fmt: skip
    # It dies before it ever writes its copy.
    dying._flush_local = lambda partitions=None: None  # type: ignore[method-assign]
    _, counts = await _feed_and_count(settings, dying, source, sink, _no_wait)
    assert counts == {"k0": 10, "k1": 10, "k2": 10}

    again, _, _ = await _counting_stream(settings, app_id, tmp_path)
    restored = await _restored_counts(again)
    assert restored.counts == counts
    assert restored.local == 0  # the copy had only its first (empty) restore's checkpoint
    assert restored.changelog > 10


async def test_an_unreadable_local_copy_falls_back_to_the_changelog(settings, unique_id, tmp_path):
    app_id = f"itest-tx-bad-{unique_id}"
    first, source, sink = await _counting_stream(settings, app_id, tmp_path)
    _, counts = await _feed_and_count(settings, first, source, sink, _no_wait)
    copy = LocalState.open(tmp_path / app_id)
    assert copy is not None
    checkpoint = copy.checkpoint(0)
    assert checkpoint is not None
    copy.save(0, [(b"counts/k0", b"{not json")], checkpoint)
    copy.close()

    again, _, _ = await _counting_stream(settings, app_id, tmp_path)
    restored = await _restored_counts(again)
    assert restored.counts == counts == {"k0": 10, "k1": 10, "k2": 10}
    assert restored.local == 0
    assert restored.changelog > 10  # the whole changelog: its tail alone is a few records


@pytest.mark.parametrize("local_copy", [False, True], ids=["changelog", "local-copy"])
async def test_a_deleted_key_stays_deleted_after_a_restart(
    settings, unique_id, tmp_path, local_copy
):
    """A deletion goes to the changelog as a tombstone and to the local copy as a delete (the
    booking processor forgets past store-days this way): no restart brings the key back."""
    state_dir = tmp_path if local_copy else None
    app_id = f"itest-tx-del-{unique_id}"
    first, source, sink = await _counting_stream(settings, app_id, state_dir)
    _, counts = await _feed_and_count(settings, first, source, sink, _no_wait)
    assert counts == {"k0": 10, "k1": 10, "k2": 10}
    await first.start()
    producer = make_producer(settings)
    await producer.start()
    try:
        await _until(lambda: first.ready)
        await producer.send_and_wait(source, FORGET, key=b"k1")
        await _until(lambda: _counts(first) == {"k0": 10, "k2": 10})
    finally:
        await producer.stop()
        await first.stop()

    again, _, _ = await _counting_stream(settings, app_id, state_dir)
    restored = await _restored_counts(again)
    assert restored.counts == {"k0": 10, "k2": 10}
    assert (restored.local > 0) == local_copy


async def test_a_restore_puts_what_it_loaded_out_of_the_collectors_reach(settings, unique_id):
    """Every full collection would walk the restored tables again: once loaded, they are
    frozen (`gc.freeze`)."""
    app_id = f"itest-tx-frozen-{unique_id}"
    first, source, sink = await _counting_stream(settings, app_id)
    await _feed_and_count(settings, first, source, sink, _no_wait)
    again, _, _ = await _counting_stream(settings, app_id)
    await again.start()
    try:
        await _until(lambda: again.ready)
        tables = again.tables(0)
        assert tables is not None and dict(tables["counts"]) == {"k0": 10, "k1": 10, "k2": 10}
        assert gc.get_freeze_count() > 0
        assert all(obj is not tables["counts"] for obj in gc.get_objects())
    finally:
        await again.stop()


async def test_a_commit_request_is_on_the_wire_within_the_turns_the_stream_yields(
    settings, unique_id, monkeypatch
):
    """After starting a commit the stream yields COMMIT_SEND_TURNS loop turns, so that the
    EndTxn request goes out before the next batch's decisions hold the loop; this counts the
    turns aiokafka's sender actually takes (a newer aiokafka may take more)."""
    topic = f"itest-turns-{unique_id}"
    await ensure_internal_topics(settings.kafka_bootstrap, [(topic, 1, {})])
    producer = _transactional_producer(settings, topic)
    await producer.start()
    sent: list[str] = []
    send = AIOKafkaConnection.send

    def spy(self: AIOKafkaConnection, request: object, *args: object, **kwargs: object) -> object:
        sent.append(type(request).__name__)
        return send(self, request, *args, **kwargs)

    monkeypatch.setattr(AIOKafkaConnection, "send", spy)
    try:
        turns = []
        for _ in range(3):
            await producer.begin_transaction()
            await producer.send_and_wait(topic, b"x")
            sent.clear()
            commit = asyncio.create_task(producer.commit_transaction())
            for turn in range(1, 50):
                await asyncio.sleep(0)
                if any(name.startswith("EndTxnRequest") for name in sent):
                    turns.append(turn)
                    break
            await commit
        print(f"EndTxn on the wire after {turns} loop turns")
        assert len(turns) == 3 and max(turns) <= COMMIT_SEND_TURNS
    finally:
        await producer.stop()


async def test_a_failed_commit_undoes_the_transaction_decided_after_it(settings, unique_id):
    """The next transaction is produced while the previous one commits; when that commit
    fails, the next one (decided on its state) is aborted too, and both are redone once."""
    stream, source, sink = await _counting_stream(settings, f"itest-tx-cf-{unique_id}")
    commit, produce, commits, produced, overlapped = (
        stream._commit, stream._produce, [0], [0], []
    )  # fmt: skip

    async def counted(*args):
        await produce(*args)
        produced[0] += 1

    async def fail_the_third_commit(group, producer, *args):
        commits[0] += 1
        if commits[0] == 3:
            before = produced[0]
            await asyncio.sleep(0.3)  # the next transaction is produced meanwhile
            overlapped.append(produced[0] - before)
            await producer.abort_transaction()
            raise RuntimeError("injected: the commit failed")
        await commit(group, producer, *args)

    stream._produce = counted  # type: ignore[method-assign]
    stream._commit = fail_the_third_commit  # type: ignore[method-assign]

    async def after(i: int) -> None:
        await asyncio.sleep(0.02)

    seen, counts = await _feed_and_count(settings, stream, source, sink, after)
    assert overlapped == [1]  # one transaction decided on the failed one's state
    assert sorted(seen) == sorted(f"v{i}" for i in range(INPUTS))  # each once, none aborted
    assert counts == {"k0": 10, "k1": 10, "k2": 10}


async def test_a_paused_task_recovers_from_a_failed_commit(settings, unique_id):
    """Backpressure and recovery together: a task whose long queue paused its partition
    loses that queue to a failed commit, and every record is still decided exactly once."""
    source, sink = f"itest-tx-pz-in-{unique_id}", f"itest-tx-pz-out-{unique_id}"
    await ensure_internal_topics(settings.kafka_bootstrap, [(source, 1, {}), (sink, 1, {})])
    backlog = 200
    producer = make_producer(settings)
    await producer.start()
    try:
        for i in range(backlog):
            await producer.send(source, f"v{i}".encode(), key=b"k")
        await producer.flush()
    finally:
        await producer.stop()
    stream = TransactionalStreamProcessor(
        bootstrap=settings.kafka_bootstrap, app_id=f"itest-tx-pz-{unique_id}", inputs=[source],
        tables=["counts"], partitions=1, handler=counting(sink), max_batch=10,
    )  # fmt: skip
    commit = stream._commit
    paused_at_failure: list[bool] = []

    async def fail_once_paused(group, producer, *args):
        if not paused_at_failure and any(t.paused for t in group.tasks.values()):
            paused_at_failure.append(True)
            await asyncio.sleep(0.5)  # found failed by the next round, not during one
            await producer.abort_transaction()
            raise RuntimeError("injected: the commit failed")
        await commit(group, producer, *args)

    stream._commit = fail_once_paused  # type: ignore[method-assign]
    await stream.start()
    try:
        await _until(lambda: _counts(stream) == {"k": backlog})
    finally:
        await stream.stop()
    assert paused_at_failure == [True]
    assert sorted(await _read_committed(settings, sink, backlog)) == sorted(
        f"v{i}" for i in range(backlog)
    )


async def test_state_written_by_the_per_table_changelogs_is_still_restored(settings, unique_id):
    """Tables used to have a changelog topic each, and input offsets went to the consumer
    group: a processor started on such data restores both, and what the shared state
    changelog says later wins (tombstones included)."""
    source, app_id = f"itest-tx-old-in-{unique_id}", f"itest-tx-old-{unique_id}"
    sink = f"itest-tx-old-out-{unique_id}"
    stream = TransactionalStreamProcessor(
        bootstrap=settings.kafka_bootstrap, app_id=app_id, inputs=[source],
        tables=["counts", "other"], partitions=1, handler=counting(sink),
    )  # fmt: skip
    legacy = stream.changelog_topic("counts")
    await ensure_internal_topics(
        settings.kafka_bootstrap,
        [(source, 1, {}), (sink, 1, {}), (legacy, 1, {}), (stream.state_topic, 1, {})],
    )
    producer = make_producer(settings)
    await producer.start()
    try:
        for key, value in [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]:
            await producer.send_and_wait(legacy, value, key=key, partition=0)
        changes: list[tuple[bytes, bytes | None]] = [
            (b"counts/b", None), (b"counts/c", b"30"), (b"other/x", b"7")
        ]  # fmt: skip
        for key, change in changes:
            await producer.send_and_wait(stream.state_topic, change, key=key, partition=0)
        # Those versions committed input offsets to the group: the first input was decided.
        for value in (b"old", b"new"):
            await producer.send_and_wait(source, value, key=b"a", partition=0)
    finally:
        await producer.stop()
    await _commit_group_offset(settings, app_id, TopicPartition(source, 0), 1)
    await stream.start()
    try:
        await _until(lambda: stream.ready)
        tables = stream.tables(0)
        assert tables is not None
        await _until(lambda: dict(tables["counts"]) == {"a": 2, "c": 30})  # "new" only
        assert dict(tables["other"]) == {"x": 7}
    finally:
        await stream.stop()


async def test_a_local_copy_of_a_recreated_changelog_is_not_used(settings, unique_id, tmp_path):
    """A state topic deleted and created again starts its offsets over: once it has grown past
    the copy's checkpoint, offsets alone would take it for the old one and mix the two. The
    copy remembers the topic's id, and the new topic has another."""
    app_id = f"itest-tx-reborn-{unique_id}"
    first, source, sink = await _counting_stream(settings, app_id, tmp_path)
    _, counts = await _feed_and_count(settings, first, source, sink, _no_wait)
    assert counts == {"k0": 10, "k1": 10, "k2": 10}
    copy = LocalState.open(tmp_path / app_id)
    assert copy is not None
    checkpoint = copy.checkpoint(0)
    copy.close()
    assert checkpoint is not None and checkpoint.topic_id

    await recreate_topic(settings.kafka_bootstrap, first.state_topic)
    producer = make_producer(settings)
    await producer.start()
    try:  # the new changelog, longer than the old one was at the checkpoint
        for n in range(checkpoint.offset + 5):
            await producer.send(first.state_topic, str(n).encode(), key=b"counts/k9", partition=0)
        await producer.flush()
    finally:
        await producer.stop()

    # The new changelog names no input position, so the inputs resume from the group's
    # offset: at the end, or the counts would be the inputs decided again (not the old copy's).
    await _commit_group_offset(settings, app_id, TopicPartition(source, 0), INPUTS)

    again, _, _ = await _counting_stream(settings, app_id, tmp_path)
    restored = await _restored_counts(again)
    assert restored.counts == {"k9": checkpoint.offset + 4}  # the new topic's, nothing else
    # Read in full, not resumed from the old checkpoint. (The new topic has no layout record,
    # so the restore fences the ids of versions before it and restores again, from the copy
    # the first restore wrote: the one record of the new topic.)
    assert restored.changelog >= checkpoint.offset + 5
    assert restored.local <= 1


async def test_a_restore_ends_even_when_its_changelog_shrank_meanwhile(
    settings, unique_id, monkeypatch
):
    """A changelog recreated while a task restores (a wiped broker) ends lower than the restore
    first read: the restore finishes at the new end instead of waiting forever (a processor
    once spun like that for an hour, deaf to SIGTERM)."""
    source, app_id = f"itest-tx-shrunk-in-{unique_id}", f"itest-tx-shrunk-{unique_id}"
    stream = TransactionalStreamProcessor(
        bootstrap=settings.kafka_bootstrap, app_id=app_id, inputs=[source], tables=["counts"],
        partitions=1, handler=counting(f"itest-tx-shrunk-out-{unique_id}"),
    )  # fmt: skip
    await ensure_internal_topics(
        settings.kafka_bootstrap, [(source, 1, {}), (stream.state_topic, 1, {})]
    )
    producer = make_producer(settings)
    await producer.start()
    try:
        for key, value in [(b"counts/a", b"1"), (b"counts/b", b"2")]:
            await producer.send_and_wait(stream.state_topic, value, key=key, partition=0)
    finally:
        await producer.stop()
    real_end_offsets = AIOKafkaConsumer.end_offsets
    inflated: list[set[str]] = []

    async def older_and_longer_at_first(self, partitions):
        ends = await real_end_offsets(self, partitions)
        if inflated:
            return ends
        inflated.append({tp.topic for tp in partitions})
        return {tp: end + 100 for tp, end in ends.items()}

    monkeypatch.setattr(AIOKafkaConsumer, "end_offsets", older_and_longer_at_first)
    await stream.start()
    try:
        await _until(lambda: stream.ready)
        tables = stream.tables(0)
        assert tables is not None and dict(tables["counts"]) == {"a": 1, "b": 2}
        assert inflated == [{stream.state_topic}]  # the restore is what saw the longer ends
    finally:
        await asyncio.wait_for(stream.stop(), 30)  # a stuck restore would hold stop() forever


async def test_a_task_resumes_from_the_positions_in_its_state_changelog(settings, unique_id):
    """Input positions commit with the state, not to the consumer group: a group offset
    moved back (by hand, or a late after-the-fact commit) makes nothing be decided twice.
    The group's offsets still follow, after the fact, so lag shows in the usual tools."""
    source, sink = f"itest-tx-pos-in-{unique_id}", f"itest-tx-pos-out-{unique_id}"
    app_id, tp = f"itest-tx-pos-{unique_id}", TopicPartition(source, 0)
    await ensure_internal_topics(settings.kafka_bootstrap, [(source, 1, {}), (sink, 1, {})])

    def processor() -> TransactionalStreamProcessor:
        return TransactionalStreamProcessor(
            bootstrap=settings.kafka_bootstrap, app_id=app_id, inputs=[source],
            tables=["counts"], partitions=1, handler=counting(sink),
            group_commit_interval_s=0.2,
        )  # fmt: skip

    producer = make_producer(settings)
    await producer.start()
    try:
        stream = processor()
        await stream.start()
        try:
            await _until(lambda: stream.ready)
            for i in range(10):
                await producer.send_and_wait(source, f"v{i}".encode(), key=b"k")
            await _until(lambda: _counts(stream) == {"k": 10})
            await _until_group_offset(settings, app_id, tp, 10)
        finally:
            await stream.stop()
        await _commit_group_offset(settings, app_id, tp, 0)  # as if nothing was read

        again = processor()
        await again.start()
        try:
            await _until(lambda: again.ready)
            for i in range(10, 15):
                await producer.send_and_wait(source, f"v{i}".encode(), key=b"k")
            await _until(lambda: _counts(again) == {"k": 15})
        finally:
            await again.stop()
    finally:
        await producer.stop()
    assert sorted(await _read_committed(settings, sink, 15)) == sorted(f"v{i}" for i in range(15))


async def test_outputs_keep_their_partition_and_order_across_full_batches(settings, unique_id):
    """A transaction's outputs go out as one batch per partition. One partition's records
    beyond a batch (512 KiB) take a second batch and stay in order; outputs without a
    partition land where a plain `send` puts their key."""
    source, sink, probe = (f"itest-tx-{name}-{unique_id}" for name in ("bin", "bout", "probe"))
    await ensure_internal_topics(
        settings.kafka_bootstrap, [(source, 1, {}), (sink, 4, {}), (probe, 4, {})]
    )
    filler = b"x" * 1024
    keys = [f"store-{i}".encode() for i in range(20)]

    def handler(
        partition: int, records: Sequence[ConsumerRecord[bytes, bytes]], tables: Tables
    ) -> list[Output]:
        outputs = []
        for _ in records:
            outputs += [Output(sink, None, b"%04d:" % i + filler, partition=0) for i in range(700)]
            outputs += [Output(sink, key, b"keyed:" + key) for key in keys]
        return outputs

    stream = TransactionalStreamProcessor(
        bootstrap=settings.kafka_bootstrap, app_id=f"itest-tx-b-{unique_id}", inputs=[source],
        tables=[], partitions=1, handler=handler,
    )  # fmt: skip
    await stream.start()
    producer = make_producer(settings)
    await producer.start()
    try:
        await _until(lambda: stream.ready)
        await producer.send_and_wait(source, b"go", key=b"k")
        expected = {key: (await producer.send_and_wait(probe, b"", key=key)).partition
                    for key in keys}  # fmt: skip
        seen = await _read_all_committed(settings, sink, 4, 700 + len(keys))
    finally:
        await producer.stop()
        await stream.stop()
    filled = [(partition, value[:4]) for partition, _, value in seen if b"keyed:" not in value]
    assert filled == [(0, b"%04d" % i) for i in range(700)]  # all of them, in order
    placed = {key: partition for partition, key, value in seen if value.startswith(b"keyed:")}
    assert placed == expected


@pytest.mark.parametrize("local_copy", [False, True], ids=["changelog", "local-copies"])
async def test_instances_share_whole_task_groups_and_hand_them_over_once(
    settings, unique_id, tmp_path, local_copy
):
    """Two instances split the task groups (all of a group's partitions on one instance), and
    groups that move while inputs keep coming are decided exactly once: the new owner's
    producers fence the old owner, and the tasks resume from their committed state. With
    local copies (one state dir, a slot each), a restarted instance gets groups back on
    copies that other owners' work left behind."""
    source, sink = f"itest-tx-tg-in-{unique_id}", f"itest-tx-tg-out-{unique_id}"
    await ensure_internal_topics(settings.kafka_bootstrap, [(source, 6, {}), (sink, 6, {})])
    everything = set(range(6))

    def instance() -> TransactionalStreamProcessor:
        return TransactionalStreamProcessor(
            bootstrap=settings.kafka_bootstrap, app_id=f"itest-tx-tg-{unique_id}",
            inputs=[source], tables=["counts"], partitions=6, handler=counting(sink),
            task_groups=3, session_timeout_ms=6000, heartbeat_interval_ms=500,
            state_dir=tmp_path if local_copy else None,
        )  # fmt: skip

    def whole_groups(tasks: set[int]) -> bool:
        return tasks == {p for p in everything if p % 3 in {t % 3 for t in tasks}}

    producer = make_producer(settings)
    await producer.start()
    sent = 0

    async def send(count: int) -> None:
        nonlocal sent
        for _ in range(count):
            await producer.send_and_wait(source, f"v{sent}".encode(), key=f"k{sent % 16}".encode())
            sent += 1

    first, second = instance(), instance()
    restarted = instance()
    try:
        await first.start()
        await _until(lambda: first.ready and set(first._tasks) == everything)
        await send(100)
        await second.start()
        await send(100)  # while the group rebalances
        await _until(lambda: second.ready and bool(second._tasks) and bool(first._tasks))
        shares = [set(first._tasks), set(second._tasks)]
        assert shares[0] | shares[1] == everything and not shares[0] & shares[1]
        assert all(whole_groups(share) for share in shares)  # (round robin would split them)
        await send(100)
        await first.stop()  # its group moves to the second instance
        await send(100)
        await _until(lambda: set(second._tasks) == everything)
        await _until(lambda: _total(second) == sent)
        await restarted.start()  # takes groups back (on the first's slot, if copies)
        await send(100)
        await _until(lambda: restarted.ready and bool(restarted._tasks))
        await _until(lambda: _total(second) + _total(restarted) == sent)
    finally:
        await producer.stop()
        await first.stop()
        await second.stop()
        await restarted.stop()
    outputs = await _read_all_committed(settings, sink, 6, sent)
    assert sorted(value for _, _, value in outputs) == sorted(f"v{i}".encode() for i in range(sent))


def _total(stream: TransactionalStreamProcessor) -> int:
    tables = [stream.tables(p) for p in range(6)]
    return sum(sum(t["counts"].values()) for t in tables if t is not None)


async def test_a_backlog_is_decided_max_batch_records_per_transaction(settings, unique_id):
    """A long backlog is taken `max_batch` records at a time across the group's tasks, so one
    transaction's decisions stay short; each record is decided once, in order per key."""
    source, sink = f"itest-tx-cap-in-{unique_id}", f"itest-tx-cap-out-{unique_id}"
    await ensure_internal_topics(settings.kafka_bootstrap, [(source, 3, {}), (sink, 3, {})])
    backlog, cap = 900, 100
    producer = make_producer(settings)
    await producer.start()
    try:
        for i in range(backlog):
            producer_key = f"k{i % 7}".encode()
            await producer.send(source, f"{i}".encode(), key=producer_key)
        await producer.flush()
    finally:
        await producer.stop()
    count = counting(sink)
    per_transaction, since_last = [], [0]

    def handler(
        partition: int, records: Sequence[ConsumerRecord[bytes, bytes]], tables: Tables
    ) -> list[Output]:
        since_last[0] += len(records)
        return count(partition, records, tables)

    stream = TransactionalStreamProcessor(
        bootstrap=settings.kafka_bootstrap, app_id=f"itest-tx-cap-{unique_id}", inputs=[source],
        tables=["counts"], partitions=3, handler=handler, max_batch=cap,
    )  # fmt: skip
    produce = stream._produce

    async def counted(group, producer, outputs, offsets):
        per_transaction.append(since_last[0])
        since_last[0] = 0
        await produce(group, producer, outputs, offsets)

    stream._produce = counted  # type: ignore[method-assign]
    await stream.start()
    try:
        await _until(lambda: sum(per_transaction) == backlog)
    finally:
        await stream.stop()
    assert max(per_transaction) <= cap < backlog
    outputs = await _read_all_committed(settings, sink, 3, backlog)
    by_key: dict[bytes | None, list[int]] = {}
    for _, key, value in outputs:
        by_key.setdefault(key, []).append(int(value))
    assert sorted(i for values in by_key.values() for i in values) == list(range(backlog))
    assert all(values == sorted(values) for values in by_key.values())


async def test_a_groups_transactions_start_at_least_the_interval_apart(settings, unique_id):
    """With `txn_interval_s`, inputs arriving meanwhile wait and join the next transaction:
    a steady trickle at `txn_interval_min_rate` or more goes out in a few fuller
    transactions, each input counted once."""
    stream, source, sink = await _counting_stream(settings, f"itest-tx-gap-{unique_id}")
    interval = stream.txn_interval_s = 0.2
    stream.txn_interval_min_rate = 5  # per second; the trickle is 50 a second
    started = _time_transactions(stream)
    seen, counts = await _feed_and_count(settings, stream, source, sink, _trickle)
    assert sorted(seen) == sorted(f"v{i}" for i in range(INPUTS))
    assert counts == {f"k{k}": INPUTS // 3 for k in range(3)}
    gaps = [later - earlier for earlier, later in itertools.pairwise(started)]
    assert gaps and min(gaps) >= interval - 0.01
    assert len(started) < INPUTS / 2  # 30 inputs over about 0.7 s: four or five


async def test_a_group_under_the_min_rate_does_not_hold_its_inputs(settings, unique_id):
    """Below `txn_interval_min_rate` the interval is not applied: each input of a trickle
    commits as soon as it is in, instead of waiting for others that are not coming."""
    stream, source, sink = await _counting_stream(settings, f"itest-tx-nogap-{unique_id}")
    stream.txn_interval_s = 0.2
    stream.txn_interval_min_rate = 1000  # per second; the trickle is 50 a second
    started = _time_transactions(stream)
    seen, counts = await _feed_and_count(settings, stream, source, sink, _trickle)
    assert sorted(seen) == sorted(f"v{i}" for i in range(INPUTS))
    assert counts == {f"k{k}": INPUTS // 3 for k in range(3)}
    # Spaced, 30 inputs 20 ms apart would take four or five transactions.
    assert len(started) > INPUTS / 2


async def _trickle(i: int) -> None:
    await asyncio.sleep(0.02)


def _time_transactions(stream: TransactionalStreamProcessor) -> list[float]:
    """When each of the stream's transactions starts (monotonic), appended as it runs."""
    started: list[float] = []
    produce = stream._produce

    async def timed(group, producer, outputs, offsets):
        started.append(time.monotonic())
        return await produce(group, producer, outputs, offsets)

    stream._produce = timed  # type: ignore[method-assign]
    return started


async def test_a_new_group_count_aborts_what_the_old_one_left_open(settings, unique_id):
    """An instance of another group count crashed mid-transaction. Its transactional ids are
    not the new owner's, so starting the new producers fences nothing of it: the new owner
    fences the ids of the layout its restored state names, and read-committed readers of
    those partitions need not wait for the broker's transaction timeout (60 s)."""
    app_id = f"itest-tx-lay-{unique_id}"
    source, sink = f"{app_id}-in", f"{app_id}-out"
    await ensure_internal_topics(settings.kafka_bootstrap, [(source, 2, {}), (sink, 2, {})])
    keys = [next(f"k{n}".encode() for n in itertools.count() if default_partition(
        f"k{n}".encode(), [0, 1]) == p) for p in (0, 1)]  # fmt: skip

    def stream(groups: int) -> TransactionalStreamProcessor:
        return TransactionalStreamProcessor(
            bootstrap=settings.kafka_bootstrap, app_id=app_id, inputs=[source],
            tables=["counts"], partitions=2, handler=counting(sink), task_groups=groups,
        )  # fmt: skip

    async def feed(stream: TransactionalStreamProcessor, first: int, count: int) -> None:
        producer = make_producer(settings)
        await producer.start()
        try:
            await _until(lambda: stream.ready)
            for i in range(first, first + count):
                await producer.send_and_wait(source, f"v{i}".encode(), key=keys[i % 2])
        finally:
            await producer.stop()

    old = stream(2)
    await old.start()
    try:
        await feed(old, 0, 6)
        await _until(lambda: _total(old) == 6)
    finally:
        await old.stop()
    # Group 1 of the old layout dies inside a transaction.
    crashed = await _abandoned_transaction(settings, old.transactional_id(1, 0), sink, 1)
    new = stream(1)
    await new.start()
    try:
        await feed(new, 6, 6)
        async with asyncio.timeout(20):  # the broker alone would abort it after 60 s
            seen = await _read_all_committed(settings, sink, 2, 12)
    finally:
        await new.stop()
        with contextlib.suppress(Exception):
            await crashed.stop()
    assert sorted(value for _, _, value in seen) == sorted(f"v{i}".encode() for i in range(12))
    assert {value for partition, _, value in seen if partition == 1} >= {b"v7", b"v9", b"v11"}


async def test_state_from_before_task_groups_fences_the_per_task_id(settings, unique_id):
    """State without a layout record was written by the versions before task groups, whose
    transactional id was the task's own (`<app>-<partition>`): the new owner aborts what a
    crashed one of those left open."""
    app_id = f"itest-tx-leg-{unique_id}"
    stream, source, sink = await _counting_stream(settings, app_id)
    await ensure_internal_topics(
        settings.kafka_bootstrap, [(stream.state_topic, 1, {"cleanup.policy": "compact"})]
    )
    legacy = _transactional_producer(settings, f"{app_id}-0")
    await legacy.start()
    try:
        await legacy.begin_transaction()
        position = f"_positions/{source}".encode()  # its state: nothing read yet
        await legacy.send_and_wait(stream.state_topic, b"0", key=position, partition=0)
        await legacy.commit_transaction()
    finally:
        await legacy.stop()
    crashed = await _abandoned_transaction(settings, f"{app_id}-0", sink, 0)
    try:
        async with asyncio.timeout(30):  # the broker alone would abort it after 60 s
            seen, counts = await _feed_and_count(settings, stream, source, sink, _no_wait)
    finally:
        with contextlib.suppress(Exception):
            await crashed.stop()
    assert sorted(seen) == sorted(f"v{i}" for i in range(INPUTS))
    assert counts == {"k0": 10, "k1": 10, "k2": 10}


async def test_what_the_other_layout_commits_before_its_fence_is_restored(
    settings, unique_id, monkeypatch
):
    """The ids to fence come from the restored state, so the fence follows the restore; what
    the other layout commits after the restore's end and before the fence takes its ids (its
    transaction open then, the restore read up to it) must reach the tables all the same."""
    app_id = f"itest-tx-late-{unique_id}"
    stream, source, _ = await _counting_stream(settings, app_id)
    await ensure_internal_topics(settings.kafka_bootstrap, [(stream.state_topic, 1, {})])
    other_id = f"{app_id}-tg2-0-0"  # group 0's first producer of a two-group layout
    other = _transactional_producer(settings, other_id)
    await other.start()
    try:
        await other.begin_transaction()
        for key, value in [("_layout/ids", b'"tg2"'), (f"_positions/{source}", b"0"),
                           ("counts/early", b"1")]:  # fmt: skip
            await other.send_and_wait(stream.state_topic, value, key=key.encode(), partition=0)
        await other.commit_transaction()
        await other.begin_transaction()  # open while the new owner restores
        await other.send_and_wait(stream.state_topic, b"2", key=b"counts/late", partition=0)

        fence = TransactionalStreamProcessor._fence
        fenced: list[str] = []

        async def committing_first(self, transactional_id: str) -> None:
            if transactional_id == other_id and other_id not in fenced:
                await other.commit_transaction()  # the other layout, a moment before its fence
            fenced.append(transactional_id)
            await fence(self, transactional_id)

        monkeypatch.setattr(TransactionalStreamProcessor, "_fence", committing_first)
        await stream.start()
        try:
            await _until(lambda: stream.ready)
            assert _counts(stream) == {"early": 1, "late": 2}
            assert sorted(fenced) == [other_id, f"{app_id}-tg2-0-1"]
        finally:
            await stream.stop()
    finally:
        with contextlib.suppress(Exception):
            await other.stop()


async def _no_wait(i: int) -> None:
    return None


async def _abandoned_transaction(
    settings: ServiceSettings, transactional_id: str, topic: str, partition: int
) -> AIOKafkaProducer:
    """A producer that died inside a transaction: its record is neither committed nor
    aborted, so read-committed readers of the partition wait behind it."""
    producer = _transactional_producer(settings, transactional_id)
    await producer.start()
    await producer.begin_transaction()
    await producer.send_and_wait(topic, b"never", key=b"crashed", partition=partition)
    return producer


def _transactional_producer(settings: ServiceSettings, transactional_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        transactional_id=transactional_id,
        enable_idempotence=True,
    )


async def _counting_stream(
    settings: ServiceSettings, app_id: str, state_dir: Path | None = None
) -> tuple[TransactionalStreamProcessor, str, str]:
    """A one-partition counting stream (not started), its input and its output topic."""
    source, sink = f"{app_id}-in", f"{app_id}-out"
    await ensure_internal_topics(settings.kafka_bootstrap, [(source, 1, {}), (sink, 1, {})])
    stream = TransactionalStreamProcessor(
        bootstrap=settings.kafka_bootstrap, app_id=app_id, inputs=[source],
        tables=["counts"], partitions=1, handler=counting(sink), state_dir=state_dir,
    )  # fmt: skip
    return stream, source, sink


async def _feed_and_count(
    settings: ServiceSettings,
    stream: TransactionalStreamProcessor,
    source: str,
    sink: str,
    after: Callable[[int], Awaitable[None]],
    first: int = 0,
) -> tuple[list[str], dict[str, int]]:
    """Run the counting stream over INPUTS inputs (keys k0-k2; `after(i)` once input i is
    in): what it published (read committed) and its counts table."""
    await stream.start()
    producer = make_producer(settings)
    await producer.start()
    try:
        await _until(lambda: stream.ready)
        for i in range(first, first + INPUTS):
            await producer.send_and_wait(source, f"v{i}".encode(), key=f"k{i % 3}".encode())
            await after(i)
        seen = await _read_committed(settings, sink, first + INPUTS)
        await _until(lambda: sum(_counts(stream).values()) == first + INPUTS)
        return seen, _counts(stream)
    finally:
        await producer.stop()
        await stream.stop()


@contextlib.asynccontextmanager
async def _group_member(
    settings: ServiceSettings, group: str, tp: TopicPartition
) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer of `group` holding `tp`: to set or read the group's offset by hand."""
    consumer = make_consumer(settings, group_id=group)
    await consumer.start()
    try:
        consumer.assign([tp])
        yield consumer
    finally:
        await consumer.stop()


async def _commit_group_offset(
    settings: ServiceSettings, group: str, tp: TopicPartition, offset: int
) -> None:
    async with _group_member(settings, group, tp) as consumer:
        await consumer.commit({tp: offset})


async def _until_group_offset(
    settings: ServiceSettings, group: str, tp: TopicPartition, offset: int
) -> None:
    async with _group_member(settings, group, tp) as consumer:
        for _ in range(150):
            if await consumer.committed(tp) == offset:
                return
            await asyncio.sleep(0.2)
    raise AssertionError(f"the group's offset never reached {offset}")


@dataclass(frozen=True)
class _Restored:
    counts: dict[str, int]
    local: float  # records the restore took from the local copy
    changelog: float  # ... and from the changelog topic


async def _restored_counts(stream: TransactionalStreamProcessor) -> _Restored:
    """Start the stream, take what its restore loaded, and stop it."""

    def restored(source: str) -> float:
        sample = REGISTRY.get_sample_value(
            "optisync_stream_restored_records_total", {"app": stream.app_id, "source": source}
        )
        return sample or 0.0

    before = restored("local"), restored("changelog")
    await stream.start()
    try:
        await _until(lambda: stream.ready)
        return _Restored(
            _counts(stream), restored("local") - before[0], restored("changelog") - before[1]
        )
    finally:
        await stream.stop()


def _counts(stream: TransactionalStreamProcessor) -> dict[str, int]:
    tables = stream.tables(0)
    return dict(tables["counts"]) if tables is not None else {}


async def _until(predicate: Callable[[], bool], within_s: float = 30) -> None:
    for _ in range(int(within_s * 10)):
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


async def _read_committed(settings: ServiceSettings, topic: str, expected: int) -> list[str]:
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    values: list[str] = []
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.seek_to_beginning()
        async with asyncio.timeout(60):
            while len(values) < expected:
                batch = await consumer.getmany(timeout_ms=500)
                values += [(r.value or b"").decode() for rs in batch.values() for r in rs]
        extra = await consumer.getmany(timeout_ms=1500)  # nothing more may follow
        values += [(r.value or b"").decode() for rs in extra.values() for r in rs]
    finally:
        await consumer.stop()
    return values


async def _read_all_committed(
    settings: ServiceSettings, topic: str, partitions: int, expected: int
) -> list[tuple[int, bytes | None, bytes]]:
    """(partition, key, value) of every committed record, each partition in offset order."""
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    seen: list[tuple[int, bytes | None, bytes]] = []
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        await consumer.seek_to_beginning()
        async with asyncio.timeout(60):
            while len(seen) < expected:
                batch = await consumer.getmany(timeout_ms=500)
                seen += [(r.partition, r.key, r.value or b"") for rs in batch.values() for r in rs]
        extra = await consumer.getmany(timeout_ms=1500)  # nothing more may follow
        seen += [(r.partition, r.key, r.value or b"") for rs in extra.values() for r in rs]
    finally:
        await consumer.stop()
    return seen
