"""Booking events through the real broker into the notify worker, out to a real webhook
receiver and a real SMTP server: order, locale, local time, reminders, retries, DLQ, replay."""

from __future__ import annotations

import asyncio
import datetime as dt
from zoneinfo import ZoneInfo

from optisync_common.resources import Resources
from schemas.events.base import Actor, Channel
from schemas.events.booking import (
    BookingCompleted,
    BookingDisplaced,
    BookingReassigned,
    RosterCause,
)
from schemas.events.notify import DeliveryAttempted
from schemas.registry import NOTIFY_DELIVERIES
from services.notify.adapters.dispatcher import NOTIFY_DLQ, Dispatcher
from services.notify.adapters.replay import replay
from services.notify.adapters.storage import NotifyRepository
from services.notify.adapters.worker import NotifyWorker
from services.notify.domain.reminders import due_time
from services.notify.settings import NotifySettings
from tests.integration.notify.helpers import (
    MovableClock,
    SmtpServer,
    TopicTail,
    WebhookReceiver,
    at_local,
    cancelled,
    confirmed,
    envelope,
    publish_all,
    rescheduled,
    wait_state,
)

SHANGHAI = "Asia/Shanghai"


def days_ahead(n: int, tz: str) -> dt.date:
    return (dt.datetime.now(ZoneInfo(tz)) + dt.timedelta(days=n)).date()


async def test_book_reschedule_cancel_arrive_in_order_in_locale_and_local_time(
    worker: NotifyWorker,
    resources: Resources,
    receiver: WebhookReceiver,
    store: str,
    repo: NotifyRepository,
    clock: MovableClock,
):
    day = days_ahead(3, SHANGHAI)
    slot, new_slot = at_local(day, "10:00", SHANGHAI), at_local(day, "15:30", SHANGHAI)
    now = clock.now()
    events = []
    for booking, locale in (("zh", "zh-CN"), ("en", "en")):
        bid = f"{store}-{booking}"
        events += [
            confirmed(store, bid, slot, SHANGHAI, locale=locale, name="王芳", now=now),
            rescheduled(store, bid, slot, new_slot, now),
            cancelled(store, bid, new_slot, now, by=Actor.STORE),
        ]
    await publish_all(resources.publisher, events)

    got = await receiver.wait_for(store, 6)
    assert len(got) == 6
    by_booking = {
        b: [r.body for r in got if r.body["booking_id"] == f"{store}-{b}"] for b in ("zh", "en")
    }
    assert [m["kind"] for m in by_booking["zh"]] == ["confirmation", "change", "cancellation"]
    assert [m["kind"] for m in by_booking["en"]] == ["confirmation", "change", "cancellation"]
    weekday_zh = "一二三四五六日"[day.weekday()]
    zh_day = f"{day.year}年{day.month}月{day.day}日（周{weekday_zh}）"
    zh = [m["text"] for m in by_booking["zh"]]
    assert zh[0] == f"王芳您好，您在静安店的标准验光已预约成功，时间：{zh_day}10:00。"
    assert f"{zh_day}10:00" in zh[1] and f"{zh_day}15:30" in zh[1]
    assert "静安店不得不取消" in zh[2] and f"{zh_day}15:30" in zh[2]
    en_day = f"{day:%a} {day.day} {day:%b} {day.year}"
    en = [m["text"] for m in by_booking["en"]]
    assert en[0] == f"Hi 王芳, your 标准验光 at 静安店 is confirmed for {en_day}, 10:00."
    assert f"from {en_day}, 10:00 to {en_day}, 15:30" in en[1]
    assert all(m["locale"] == "en" for m in by_booking["en"])
    assert all(r.idempotency_key == r.notification_id for r in got)
    # the cancellation dropped every reminder (the reschedule's included)
    for b in ("zh", "en"):
        reminders = await repo.outbox.find(
            {"booking_id": f"{store}-{b}", "kind": "reminder"}
        ).to_list(20)
        assert len(reminders) == 4 and {d["state"] for d in reminders} == {"cancelled"}


async def test_reminders_fire_at_store_local_time_move_and_drop(
    worker: NotifyWorker,
    resources: Resources,
    receiver: WebhookReceiver,
    repo: NotifyRepository,
    clock: MovableClock,
    unique_id: str,
):
    tz = "America/New_York"
    store = f"nt-rem-{unique_id}"
    await repo.upsert_store(
        store,
        timezone=tz,
        locale="en",
        name="Midtown",
        channels={"*": {"kind": "webhook", "url": receiver.url}},
    )
    day = days_ahead(3, tz)
    s_a = at_local(day, "09:30", tz)
    s_c2 = at_local(day + dt.timedelta(days=1), "14:00", tz)
    now = clock.now()
    a, b, c = f"{store}-a", f"{store}-b", f"{store}-c"
    await publish_all(
        resources.publisher,
        [
            confirmed(store, a, s_a, tz, locale="en", now=now),
            confirmed(store, b, s_a, tz, locale="en", now=now),
            cancelled(store, b, s_a, now),
            confirmed(store, c, s_a, tz, locale="en", now=now),
            rescheduled(store, c, s_a, s_c2, now),
        ],
    )
    await receiver.wait_for(store, 5)

    async def pending(booking: str) -> list[dict]:
        return (
            await repo.outbox.find({"booking_id": booking, "kind": "reminder", "state": "pending"})
            .sort("due_at", 1)
            .to_list(10)
        )

    async def settled() -> bool:
        # the messages are out; the outbox writes that follow each send may still be landing
        return [d["slot_start"] for d in await pending(c)] == [s_c2, s_c2] and len(
            await pending(a)
        ) == 2

    for _ in range(100):
        if await settled():
            break
        await asyncio.sleep(0.1)
    assert [d["due_at"] for d in await pending(a)] == [
        at_local(day - dt.timedelta(days=1), "09:30", tz),
        at_local(day, "07:30", tz),
    ]
    assert await pending(b) == []
    assert [d["slot_start"] for d in await pending(c)] == [s_c2, s_c2]

    def reminders_of(booking: str) -> list[dict]:
        return [
            r.body
            for r in receiver.for_store(store)
            if r.body["booking_id"] == booking and r.body["kind"] == "reminder"
        ]

    try:
        # before the 24 h reminder: nothing is due. The clock runs on from where it is set, and
        # this poll first works through what else is due by then, left by earlier tests (9
        # notifications, 1.7 s in a run of the notify tests alone): a 10 s margin once did not
        # hold in the full suite on a slow host (the reminder went out).
        clock.set(due_time(s_a, 1440, tz) - dt.timedelta(minutes=10))
        await worker.dispatcher.poll_once()
        assert reminders_of(a) == [] and len(await pending(a)) == 2
        # at 09:30 local the day before
        clock.set(due_time(s_a, 1440, tz) + dt.timedelta(seconds=1))
        await receiver.wait_for(store, 6)
        first = reminders_of(a)
        assert (
            len(first) == 1 and f"{day:%a} {day.day} {day:%b} {day.year}, 09:30" in first[0]["text"]
        )
        # 2 h before: the second one
        clock.set(due_time(s_a, 120, tz) + dt.timedelta(seconds=1))
        await receiver.wait_for(store, 7)
        assert len(reminders_of(a)) == 2
        # the rescheduled booking's reminder comes for its new time, the cancelled one's never
        clock.set(due_time(s_c2, 1440, tz) + dt.timedelta(seconds=1))
        await receiver.wait_for(store, 8)
        assert len(reminders_of(c)) == 1 and "14:00" in reminders_of(c)[0]["text"]
        assert reminders_of(b) == []
    finally:
        clock.reset()  # a failure here must not move the next test's time


async def test_reminder_due_while_down_is_sent_if_useful_else_skipped(
    notify_settings: NotifySettings,
    resources: Resources,
    receiver: WebhookReceiver,
    repo: NotifyRepository,
    clock: MovableClock,
    store: str,
    worker: NotifyWorker,
):
    day = days_ahead(2, SHANGHAI)
    slot = at_local(day, "11:00", SHANGHAI)
    bid = f"{store}-late"
    await publish_all(
        resources.publisher,
        [confirmed(store, bid, slot, SHANGHAI, locale="zh-CN", now=clock.now())],
    )
    await receiver.wait_for(store, 1)
    await asyncio.sleep(0)
    # notify "was down" across both due times: 100 min before the visit it comes back
    clock.set(slot - dt.timedelta(minutes=100))
    try:
        got = await receiver.wait_for(store, 2)
        sent = await wait_state(repo, got[1].notification_id, "sent")
        docs = await repo.outbox.find({"booking_id": bid, "kind": "reminder"}).to_list(5)
        states = sorted((d["due_at"], d["_id"], d["state"]) for d in docs)
        assert [(i, s) for _, i, s in states][1] == (sent["_id"], "sent")
        # The earlier one may be taken a poll later (its batched insert can land after the
        # later one's), but only to be skipped.
        await wait_state(repo, states[0][1], "skipped")
        await asyncio.sleep(0.3)  # a poll or two more: still nothing else sent
        assert len(receiver.for_store(store)) == 2
    finally:
        clock.reset()


async def test_two_instances_never_both_send_one_reminder(
    notify_settings: NotifySettings,
    resources: Resources,
    receiver: WebhookReceiver,
    repo: NotifyRepository,
    clock: MovableClock,
    store: str,
    worker: NotifyWorker,
):
    day = days_ahead(2, SHANGHAI)
    slot = at_local(day, "16:00", SHANGHAI)
    bookings = [f"{store}-{i}" for i in range(15)]
    await publish_all(
        resources.publisher,
        [confirmed(store, b, slot, SHANGHAI, locale="zh-CN", now=clock.now()) for b in bookings],
    )
    await receiver.wait_for(store, 15)
    assert resources.redis is not None and resources.producer is not None
    producer = resources.producer
    others = [
        Dispatcher(notify_settings, repo, resources.redis, lambda: producer, clock)
        for _ in range(2)
    ]
    clock.set(due_time(slot, 1440, SHANGHAI) + dt.timedelta(seconds=1))
    try:
        # three instances (two here and the worker's scheduler) race for the same reminders
        await asyncio.gather(*(d.poll_once() for d in others), worker.dispatcher.poll_once())
        got = await receiver.wait_for(store, 30)
        reminder_ids = [r.notification_id for r in got if r.body["kind"] == "reminder"]
        assert len(reminder_ids) == 15 and len(set(reminder_ids)) == 15
        await asyncio.gather(*(d.poll_once() for d in others))
        assert len(receiver.for_store(store)) == 30
    finally:
        clock.reset()
        for d in others:
            await d.adapters.close()


async def test_failing_endpoint_retries_then_dead_letters_and_replay_delivers_once(
    notify_settings: NotifySettings,
    resources: Resources,
    receiver: WebhookReceiver,
    repo: NotifyRepository,
    clock: MovableClock,
    store: str,
    worker: NotifyWorker,
):
    deliveries = await TopicTail(notify_settings, NOTIFY_DELIVERIES).start()
    dlq = await TopicTail(notify_settings, NOTIFY_DLQ).start()
    receiver.failing.add(store)
    slot = at_local(days_ahead(4, SHANGHAI), "10:00", SHANGHAI)
    event = confirmed(store, f"{store}-f", slot, SHANGHAI, locale="zh-CN", now=clock.now())
    try:
        await publish_all(resources.publisher, [event])
        doc = await repo.outbox.find_one(
            {"source_event_id": str(event.event_id), "kind": "confirmation"}
        )
        for _ in range(100):
            if doc is not None:
                break
            await asyncio.sleep(0.1)
            doc = await repo.outbox.find_one(
                {"source_event_id": str(event.event_id), "kind": "confirmation"}
            )
        assert doc is not None
        nid = doc["_id"]
        dead = await wait_state(repo, nid, "dead_lettered")
        assert dead["attempts"] == notify_settings.max_attempts
        assert receiver.failed_calls >= notify_settings.max_attempts
        outcomes = await deliveries.collect(
            lambda e: isinstance(e.payload, DeliveryAttempted) and e.payload.notification_id == nid,
            notify_settings.max_attempts + 1,
        )
        statuses = [(e.payload.attempt, str(e.payload.status)) for e in outcomes]
        assert statuses == [(1, "failed"), (2, "failed"), (3, "failed"), (3, "dead_lettered")]
        letters = await dlq.collect(lambda e: e.payload.original_key() == nid.encode(), 1)
        assert letters[0].payload.error_type == "delivery_failed"
        assert receiver.for_store(store) == []
    finally:
        receiver.failing.discard(store)
        await deliveries.stop()
        await dlq.stop()
    report = await replay(notify_settings, store_id=store, out=lambda _: None)
    assert report.sent == [nid]
    assert [r.notification_id for r in receiver.for_store(store)] == [nid]
    again = await replay(notify_settings, store_id=store, out=lambda _: None)
    assert again.revived == [] and len(receiver.for_store(store)) == 1


async def test_email_goes_out_over_smtp(
    resources: Resources,
    repo: NotifyRepository,
    smtp: SmtpServer,
    clock: MovableClock,
    worker: NotifyWorker,
    unique_id: str,
):
    store = f"nt-mail-{unique_id}"
    await repo.upsert_store(
        store,
        timezone="Europe/London",
        locale="en",
        name="Soho",
        channels={
            "web": {
                "kind": "smtp",
                "host": "127.0.0.1",
                "port": smtp.port,
                "sender": "no-reply@soho",
            }
        },
    )
    slot = at_local(days_ahead(3, "Europe/London"), "12:15", "Europe/London")
    bid = f"{store}-m"
    await publish_all(
        resources.publisher,
        [
            confirmed(
                store,
                bid,
                slot,
                "Europe/London",
                locale="en",
                channel=Channel.WEB,
                chat_id="ana@example.com",
                now=clock.now(),
            )
        ],
    )
    doc = None
    for _ in range(150):
        doc = await repo.outbox.find_one({"booking_id": bid, "kind": "confirmation"})
        if doc is not None and doc["state"] == "sent":
            break
        await asyncio.sleep(0.1)
    assert doc is not None and doc["state"] == "sent"
    mails = [m for m in smtp.messages if m["X-OptiSync-Notification-Id"] == doc["_id"]]
    assert len(mails) == 1
    assert mails[0]["To"] == "ana@example.com" and mails[0]["Subject"] == "Booking confirmed"
    assert "12:15" in mails[0].get_content()


async def test_roster_driven_changes_and_post_visit_messages(
    resources: Resources,
    receiver: WebhookReceiver,
    store: str,
    clock: MovableClock,
    worker: NotifyWorker,
):
    day = days_ahead(5, SHANGHAI)
    slot = at_local(day, "09:00", SHANGHAI)
    bid = f"{store}-r"
    now = clock.now()
    await publish_all(
        resources.publisher,
        [
            confirmed(store, bid, slot, SHANGHAI, locale="en", now=now),
            envelope(
                BookingReassigned(
                    booking_id=bid,
                    customer_ref=f"c-{bid}",
                    from_optometrist_id="o1",
                    to_optometrist_id="o2",
                    cause=RosterCause.SICK,
                    slot_start=slot,
                    local_start=slot.isoformat(),
                ),
                store,
                now,
            ),
            envelope(
                BookingDisplaced(
                    booking_id=bid,
                    customer_ref=f"c-{bid}",
                    cause=RosterCause.LEAVE,
                    exam_type="standard",
                    optometrist_id="o2",
                    slot_start=slot,
                    local_start=slot.isoformat(),
                    alternatives=[slot + dt.timedelta(hours=2)],
                ),
                store,
                now,
            ),
            envelope(
                BookingCompleted(
                    booking_id=bid, idempotency_key=f"done-{bid}", optometrist_id="o2"
                ),
                store,
                now,
            ),
        ],
    )
    got = await receiver.wait_for(store, 4)
    assert [r.body["kind"] for r in got] == [
        "confirmation",
        "reassignment",
        "displacement",
        "feedback_request",
    ]
    assert f"{day:%a} {day.day} {day:%b} {day.year}, 11:00" in got[2].body["text"]
    assert "rating from 1 to 5" in got[3].body["text"]


async def test_an_event_redelivered_after_redis_lost_its_claims_is_not_sent_again(
    worker: NotifyWorker,
    notify_settings: NotifySettings,
    resources: Resources,
    receiver: WebhookReceiver,
    store: str,
    repo: NotifyRepository,
    clock: MovableClock,
):
    """Redis keeps no copy on disk: a restart forgets every claim. An event redelivered after
    that (its offset was not committed yet) would win its claim again and go out twice; the
    outbox in MongoDB still knows it was handled."""
    assert resources.redis is not None
    slot = at_local(days_ahead(3, SHANGHAI), "10:00", SHANGHAI)
    first = confirmed(store, f"{store}-once", slot, SHANGHAI, locale="en", now=clock.now())
    await publish_all(resources.publisher, [first])
    (sent,) = await receiver.wait_for(store, 1)
    await wait_state(repo, sent.notification_id, "sent")  # handled to the end: claim done

    prefix = notify_settings.redis_prefix  # Redis restarted: the claim and its marker gone
    await resources.redis.delete(f"{prefix}claim:{sent.notification_id}", f"{prefix}claims:since")
    sentinel = confirmed(store, f"{store}-after", slot, SHANGHAI, locale="en", now=clock.now())
    await publish_all(resources.publisher, [first, sentinel])  # the same event again, then one
    got = await receiver.wait_for(store, 2)  # the sentinel: the redelivery was handled before it
    await asyncio.sleep(0.5)
    assert sorted(r.body["booking_id"] for r in receiver.for_store(store)) == sorted(
        [f"{store}-once", f"{store}-after"]
    ), got
