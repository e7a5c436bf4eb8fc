"""Booking events -> notifications: kinds, ids, locales, store-local times, reminders."""

from __future__ import annotations

import datetime as dt

from schemas.envelope import new_envelope
from schemas.events.base import Actor, Channel, EventPayload
from schemas.events.booking import (
    BookingCancelled,
    BookingCompleted,
    BookingConfirmed,
    BookingDisplaced,
    BookingReassigned,
    BookingRescheduled,
    Customer,
    ExamResultPosted,
    RosterCause,
)
from schemas.events.notify import NotificationKind
from services.notify.domain.model import StoreProfile
from services.notify.domain.planner import Policy, plan

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
SLOT = dt.datetime(2026, 3, 5, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
STORE = StoreProfile(
    "s1", timezone="Asia/Shanghai", locale="zh-CN", name="静安店", exam_names={"std": "标准验光"}
)
POLICY = Policy()


def env(payload: EventPayload):
    return new_envelope(payload, region="cn", store_id="s1", correlation_id="c", occurred_at=NOW)


def confirmed(locale: str = "zh-CN", channel: Channel = Channel.WECHAT):
    return env(
        BookingConfirmed(
            booking_id="b1",
            idempotency_key="k",
            exam_type="std",
            optometrist_id="o1",
            customer=Customer(customer_ref="c1", name="王芳", chat_id="wx1", locale=locale),
            channel=channel,
            slot_start=SLOT,
            slot_end=SLOT + dt.timedelta(minutes=30),
            local_start="2026-03-05T10:00:00+08:00",
            timezone="Asia/Shanghai",
        )
    )


def test_confirmation_in_customer_locale_and_store_time_with_two_reminders():
    event = confirmed()
    result = plan(event, None, STORE, POLICY, NOW)
    kinds = [n.kind for n in result.notifications]
    assert kinds == [
        NotificationKind.CONFIRMATION,
        NotificationKind.REMINDER,
        NotificationKind.REMINDER,
    ]
    first = result.notifications[0]
    assert first.locale == "zh-CN"
    assert "2026年3月5日（周四）10:00" in first.text and "静安店" in first.text
    assert "标准验光" in first.text
    dues = sorted(n.due_at for n in result.notifications[1:])
    assert dues == [SLOT - dt.timedelta(hours=24), SLOT - dt.timedelta(hours=2)]
    # deterministic: the same event planned again gives the same ids
    again = plan(event, None, STORE, POLICY, NOW + dt.timedelta(minutes=5))
    assert [n.notification_id for n in again.notifications] == [
        n.notification_id for n in result.notifications
    ]
    assert len({n.notification_id for n in result.notifications}) == 3


def test_english_customer_and_unknown_locale_falls_back_to_store():
    en = plan(confirmed("en"), None, STORE, POLICY, NOW).notifications[0]
    assert en.locale == "en" and "Thu 5 Mar 2026, 10:00" in en.text
    fr = plan(confirmed("fr"), None, STORE, POLICY, NOW).notifications[0]
    assert fr.locale == "zh-CN"
    en_gb = plan(confirmed("en-GB"), None, STORE, POLICY, NOW).notifications[0]
    assert en_gb.locale == "en"


def test_reschedule_cancel_reassign_displace_result_and_feedback():
    ctx = plan(confirmed("en"), None, STORE, POLICY, NOW).context
    assert ctx is not None
    new = SLOT + dt.timedelta(days=1, hours=5)
    moved = plan(
        env(
            BookingRescheduled(
                booking_id="b1",
                idempotency_key="k2",
                customer_ref="c1",
                exam_type="std",
                old_slot_start=SLOT,
                old_optometrist_id="o1",
                old_local_start="x",
                new_slot_start=new,
                new_slot_end=new + dt.timedelta(minutes=30),
                new_optometrist_id="o2",
                new_local_start="y",
            )
        ),
        ctx,
        STORE,
        POLICY,
        NOW,
    )
    change = moved.notifications[0]
    assert change.kind == NotificationKind.CHANGE
    assert "Thu 5 Mar 2026, 10:00" in change.text and "Fri 6 Mar 2026, 15:00" in change.text
    assert moved.drop_reminders and moved.keep_reminders_for == new
    assert {n.slot_start for n in moved.notifications[1:]} == {new}

    cancelled = plan(
        env(
            BookingCancelled(
                booking_id="b1",
                customer_ref="c1",
                by=Actor.STORE,
                late=False,
                minutes_before_start=90,
                exam_type="std",
                optometrist_id="o1",
                slot_start=SLOT,
                local_start="x",
            )
        ),
        ctx,
        STORE,
        POLICY,
        NOW,
    )
    assert [n.template for n in cancelled.notifications] == ["cancellation.by_store"]
    assert cancelled.drop_reminders and cancelled.keep_reminders_for is None

    reassigned = plan(
        env(
            BookingReassigned(
                booking_id="b1",
                customer_ref="c1",
                from_optometrist_id="o1",
                to_optometrist_id="o3",
                cause=RosterCause.SICK,
                slot_start=SLOT,
                local_start="x",
            )
        ),
        ctx,
        STORE,
        POLICY,
        NOW,
    )
    assert reassigned.notifications[0].kind == NotificationKind.REASSIGNMENT
    assert not reassigned.drop_reminders

    alternatives = [SLOT + dt.timedelta(hours=1), SLOT + dt.timedelta(days=1)]
    displaced = plan(
        env(
            BookingDisplaced(
                booking_id="b1",
                customer_ref="c1",
                cause=RosterCause.LEAVE,
                exam_type="std",
                optometrist_id="o1",
                slot_start=SLOT,
                local_start="x",
                alternatives=alternatives,
            )
        ),
        ctx,
        STORE,
        POLICY,
        NOW,
    )
    text = displaced.notifications[0].text
    assert "Thu 5 Mar 2026, 11:00" in text and "Fri 6 Mar 2026, 10:00" in text
    assert displaced.drop_reminders

    result = plan(
        env(
            ExamResultPosted(
                booking_id="b1",
                idempotency_key="k3",
                customer_ref="c1",
                optometrist_id="o1",
                summary="R -1.25 L -1.00, no change needed",
            )
        ),
        ctx,
        STORE,
        POLICY,
        NOW,
    )
    assert result.notifications[0].kind == NotificationKind.EXAM_RESULT
    assert "R -1.25 L -1.00" in result.notifications[0].text

    done = plan(
        env(BookingCompleted(booking_id="b1", idempotency_key="k4", optometrist_id="o1")),
        ctx,
        STORE,
        POLICY,
        NOW,
    )
    assert done.awaits_rating
    assert done.notifications[0].kind == NotificationKind.FEEDBACK_REQUEST
    assert done.notifications[0].due_at == NOW + POLICY.feedback_delay


def test_messages_about_old_events_go_stale_reminders_do_not():
    old = confirmed().model_copy(update={"occurred_at": NOW - dt.timedelta(hours=5)})
    result = plan(old, None, STORE, POLICY, NOW)
    confirmation, *reminders = result.notifications
    assert confirmation.stale_after is not None and confirmation.stale_after < NOW
    assert all(r.stale_after is not None and r.stale_after > NOW for r in reminders)


def test_event_for_unknown_booking_is_reported_not_invented():
    result = plan(
        env(BookingCompleted(booking_id="zz", idempotency_key="k", optometrist_id="o")),
        None,
        STORE,
        POLICY,
        NOW,
    )
    assert result.missing_context and result.notifications == []


def test_sms_text_is_cut_to_the_channel_limit():
    long = "x" * 1000
    ctx = plan(confirmed("en", Channel.PHONE), None, STORE, POLICY, NOW).context
    result = plan(
        env(
            ExamResultPosted(
                booking_id="b1",
                idempotency_key="k3",
                customer_ref="c1",
                optometrist_id="o1",
                summary=long,
            )
        ),
        ctx,
        STORE,
        POLICY,
        NOW,
    )
    assert len(result.notifications[0].text) == 320 and result.notifications[0].text.endswith("…")
