"""The due index (Redis sorted set) is only an index: rebuilt from the MongoDB outbox when a
worker starts, entries of notifications no longer pending are dropped, and a cancel removes
a booking's reminders by id."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

from optisync_common.resources import Resources
from services.notify.adapters.dispatcher import Dispatcher
from services.notify.adapters.storage import NotifyRepository
from services.notify.adapters.worker import NotifyWorker
from services.notify.domain.reminders import due_time
from services.notify.settings import NotifySettings
from tests.integration.notify.helpers import (
    MovableClock,
    WebhookReceiver,
    at_local,
    cancelled,
    confirmed,
    publish_all,
    wait_state,
)

SHANGHAI = "Asia/Shanghai"


async def _pending_reminders(repo: NotifyRepository, booking_id: str, count: int) -> list[dict]:
    """The booking's reminders once they are listed in its context (stored after the send)."""
    for _ in range(100):
        known = await repo.context(booking_id)
        if known.reminders is not None and len(known.reminders) == count:
            docs = [await repo.get(r["id"]) for r in known.reminders]
            if all(d is not None for d in docs):
                return [d for d in docs if d is not None]
        await asyncio.sleep(0.1)
    raise AssertionError(f"{booking_id}: {count} reminders never listed")


async def _confirm_one(
    resources: Resources, clock: MovableClock, store: str, booking_id: str, days_ahead: int
) -> None:
    """One booking confirmed at 11:00 Shanghai time `days_ahead` days from today."""
    slot = at_local(dt.date.today() + dt.timedelta(days=days_ahead), "11:00", SHANGHAI)
    await publish_all(
        resources.publisher,
        [confirmed(store, booking_id, slot, SHANGHAI, locale="en", now=clock.now())],
    )


def _own_dispatcher(
    settings: NotifySettings,
    resources: Resources,
    repo: NotifyRepository,
    clock: MovableClock,
    **overrides: Any,
) -> Dispatcher:
    """A dispatcher beside the worker's, with some settings of its own."""
    assert resources.redis is not None and resources.producer is not None
    producer = resources.producer
    return Dispatcher(
        settings.model_copy(update=overrides), repo, resources.redis, lambda: producer, clock
    )


async def test_due_index_is_rebuilt_from_mongo_when_a_worker_starts(
    notify_settings: NotifySettings,
    resources: Resources,
    receiver: WebhookReceiver,
    repo: NotifyRepository,
    clock: MovableClock,
    store: str,
    worker: NotifyWorker,
):
    assert resources.redis is not None and repo.schedule is not None
    index = repo.schedule
    slot = at_local(dt.date.today() + dt.timedelta(days=3), "15:00", SHANGHAI)
    kept, dropped = f"{store}-kept", f"{store}-dropped"
    now = clock.now()
    await publish_all(
        resources.publisher,
        [
            confirmed(store, kept, slot, SHANGHAI, locale="en", now=now),
            confirmed(store, dropped, slot, SHANGHAI, locale="en", now=now),
            cancelled(store, dropped, slot, now),
        ],
    )
    await receiver.wait_for(store, 3)
    reminders = await _pending_reminders(repo, kept, 2)
    await _pending_reminders(repo, dropped, 0)  # the cancel emptied the list
    dropped_docs = await repo.outbox.find({"booking_id": dropped, "kind": "reminder"}).to_list(5)
    assert {d["state"] for d in dropped_docs} == {"cancelled"} and len(dropped_docs) == 2
    cancelled_ids = [d["_id"] for d in dropped_docs]
    for doc in reminders:
        assert await resources.redis.zscore(index.key, doc["_id"]) == doc["due_at"].timestamp()
    for nid in cancelled_ids:  # the cancel took them out of the index by id
        assert await resources.redis.zscore(index.key, nid) is None

    # Redis lost the index (restart without persistence, flush): a starting worker rebuilds it.
    await resources.redis.delete(index.key)
    restarted = NotifyWorker(
        notify_settings.model_copy(update={"consumer_group": f"nt-rb-{uuid.uuid4().hex[:8]}"}),
        clock=clock,
    )
    await restarted.start(resources)
    try:
        for doc in reminders:
            assert await resources.redis.zscore(index.key, doc["_id"]) == doc["due_at"].timestamp()
        for nid in cancelled_ids:
            assert await resources.redis.zscore(index.key, nid) is None
        # and it is what the schedulers send from: the 24 h reminder goes out, once
        clock.set(due_time(slot, 1440, SHANGHAI) + dt.timedelta(seconds=1))
        got = await receiver.wait_for(store, 4)
        assert [r.body["kind"] for r in got].count("reminder") == 1
        assert got[-1].body["booking_id"] == kept
        await wait_state(repo, got[-1].notification_id, "sent")
        await asyncio.gather(restarted.dispatcher.poll_once(), worker.dispatcher.poll_once())
        assert len(receiver.for_store(store)) == 4
        for _ in range(50):  # out of the index right after its outcome is stored
            if await resources.redis.zscore(index.key, got[-1].notification_id) is None:
                break
            await asyncio.sleep(0.05)
        assert await resources.redis.zscore(index.key, got[-1].notification_id) is None
    finally:
        clock.reset()
        await restarted.stop()


async def test_index_entries_without_a_pending_notification_are_dropped(
    notify_settings: NotifySettings,
    resources: Resources,
    receiver: WebhookReceiver,
    repo: NotifyRepository,
    clock: MovableClock,
    store: str,
    worker: NotifyWorker,
):
    assert resources.redis is not None and repo.schedule is not None
    index = repo.schedule
    await _confirm_one(resources, clock, store, f"{store}-done", days_ahead=4)
    sent_id = (await receiver.wait_for(store, 1))[0].notification_id
    await wait_state(repo, sent_id, "sent")
    long_ago = clock.now() - dt.timedelta(hours=1)
    orphan = f"orphan-{uuid.uuid4().hex}"
    # a sent notification and an id whose document never arrived (crash before the insert)
    await index.add({sent_id: long_ago, orphan: long_ago})
    quick = _own_dispatcher(notify_settings, resources, repo, clock, lease_s=0.3)
    try:
        await quick.poll_once()
        assert await resources.redis.zscore(index.key, sent_id) is None
        # the orphan gets the lease time for its insert to land, then it is dropped
        assert await resources.redis.zscore(index.key, orphan) is not None
        # Dropped once a lease has passed: by this dispatcher, or by the worker's own (which
        # may hold the orphan's lease for its lease_s first).
        deadline = asyncio.get_running_loop().time() + notify_settings.lease_s + 5
        while await resources.redis.zscore(index.key, orphan) is not None:
            assert asyncio.get_running_loop().time() < deadline, "orphan never dropped"
            await asyncio.sleep(0.4)
            await quick.poll_once()
        assert len(receiver.for_store(store)) == 1
    finally:
        await quick.adapters.close()


async def test_a_revived_notification_stays_due_when_a_worker_polls_during_the_revival(
    notify_settings: NotifySettings,
    resources: Resources,
    repo: NotifyRepository,
    clock: MovableClock,
    store: str,
):
    """A worker's poll between the replay's index entry and its state update sees the
    notification still dead-lettered and drops the entry (CI once lost a replayed send so)."""
    assert resources.redis is not None and resources.producer is not None
    assert repo.schedule is not None
    producer = resources.producer
    # A day ahead of the running worker's clock: only this dispatcher finds the entry due.
    later = MovableClock()
    later.set(clock.now() + dt.timedelta(days=1))
    polling = Dispatcher(notify_settings, repo, resources.redis, lambda: producer, later)
    nid = f"{store}-revived-{uuid.uuid4().hex}"
    await repo.outbox.insert_one({"_id": nid, "state": "dead_lettered", "store_id": store})
    revival = NotifyRepository(resources.db, repo.schedule)
    outbox = revival.outbox

    class PolledBeforeTheUpdate:
        """The outbox, with a worker's poll of the due index just before each update."""

        def __getattr__(self, name: str) -> object:
            return getattr(outbox, name)

        async def update_one(self, *args: Any, **kwargs: Any) -> Any:
            await polling.poll_once()
            return await outbox.update_one(*args, **kwargs)

    revival.outbox = PolledBeforeTheUpdate()  # type: ignore[assignment]
    try:
        assert await revival.revive(nid, None, later.now())
        assert (await repo.get(nid) or {}).get("state") == "pending"
        assert nid in [due_id for due_id, _ in await repo.due(later.now(), 10_000)]
    finally:
        await polling.adapters.close()
        await repo.unschedule([nid])
        await repo.outbox.delete_one({"_id": nid})


async def test_a_running_scheduler_rebuilds_the_due_index_redis_lost(
    notify_settings: NotifySettings,
    resources: Resources,
    receiver: WebhookReceiver,
    repo: NotifyRepository,
    clock: MovableClock,
    store: str,
    worker: NotifyWorker,
):
    # Before, only a starting worker rebuilt the index: a Redis restart under a running one
    # left every pending reminder unsent until the next start.
    assert resources.redis is not None and repo.schedule is not None
    index = repo.schedule
    bid = f"{store}-lost"
    await _confirm_one(resources, clock, store, bid, days_ahead=5)
    await receiver.wait_for(store, 1)
    reminders = await _pending_reminders(repo, bid, 2)
    assert await index.is_filled()

    await resources.redis.delete(index.key, f"{index.key}:filled")  # Redis lost both
    checking = _own_dispatcher(notify_settings, resources, repo, clock, due_index_check_s=0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(checking.run_scheduler(stop))
    try:
        for _ in range(100):
            scores = [await resources.redis.zscore(index.key, d["_id"]) for d in reminders]
            if await index.is_filled() and None not in scores:
                break
            await asyncio.sleep(0.05)
        for doc in reminders:
            assert await resources.redis.zscore(index.key, doc["_id"]) == doc["due_at"].timestamp()
        assert await index.is_filled()
    finally:
        stop.set()
        await task
        await checking.adapters.close()
