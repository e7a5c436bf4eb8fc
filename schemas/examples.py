"""A valid, realistic example of every event type (fixed times, no clock), for tests and docs.

``example_payload(RequestBooking)`` or ``example_envelope(BookingConfirmed)``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import TypeVar, cast

from schemas.catalog import EVENT_TYPES
from schemas.envelope import Envelope, deterministic_event_id, new_envelope
from schemas.events import (
    AcceptOffer,
    Actor,
    AvailabilityViewed,
    BookingCancelled,
    BookingCheckedIn,
    BookingCompleted,
    BookingConfirmed,
    BookingDisplaced,
    BookingFact,
    BookingNoShow,
    BookingReassigned,
    BookingRejected,
    BookingRescheduled,
    CancelBooking,
    Channel,
    CheckInBooking,
    CommandFailed,
    CompleteBooking,
    Customer,
    DeadLetter,
    DeclineOffer,
    DeliveryAttempted,
    DeliveryStatus,
    EventPayload,
    ExamResultPosted,
    ExamTypeDefined,
    ExamTypeSlots,
    FactKind,
    FeedbackReceived,
    JoinWaitlist,
    LeaveGranted,
    LeaveKind,
    LeaveWaitlist,
    LocalInterval,
    MarkNoShow,
    MessageReceived,
    MessageRouted,
    NotificationKind,
    OfferDeclined,
    OfferExpired,
    OfferTaken,
    OpeningInterval,
    OptometristJoined,
    OptometristLeft,
    PostExamResult,
    RejectionReason,
    RequestBooking,
    RescheduleBooking,
    RosterCause,
    ShiftCancelled,
    ShiftChanged,
    ShiftPublished,
    SlotOffered,
    StaffRole,
    StoreDayAvailability,
    StoreHoursChanged,
    StoreRegistered,
    TrainingScheduled,
    WaitlistJoined,
    WaitlistLeft,
    local_iso,
)

__all__ = [
    "EXAMPLE_REGION",
    "EXAMPLE_STORE",
    "EXAMPLE_TIME",
    "example_envelope",
    "example_payload",
]

P = TypeVar("P", bound=EventPayload)

EXAMPLE_REGION = "cn"
EXAMPLE_STORE = "sh-001"
EXAMPLE_TZ = "Asia/Shanghai"
EXAMPLE_TIME = dt.datetime(2024, 5, 1, 1, 0, tzinfo=dt.UTC)  # 09:00 in Shanghai
_SLOT = EXAMPLE_TIME + dt.timedelta(days=2)
_DAY = dt.date(2024, 5, 3)
_CUSTOMER = Customer(
    customer_ref="cust-42", name="李华", phone="+8613800000000", chat_id="wx-o6_abc", locale="zh-CN"
)
_OPENING = {
    "mon": [
        OpeningInterval(open="09:00", close="12:00"),
        OpeningInterval(open="13:00", close="18:00"),
    ],
    "sat": [OpeningInterval(open="10:00", close="16:00")],
}


def _local(instant: dt.datetime) -> str:
    return local_iso(instant, EXAMPLE_TZ)


_FACTORIES: dict[str, Callable[[], EventPayload]] = {
    # -- booking commands ----------------------------------------------------------------
    "RequestBooking": lambda: RequestBooking(
        booking_id="bk-1",
        idempotency_key="idem-1",
        channel=Channel.WECHAT,
        customer=_CUSTOMER,
        exam_type="comprehensive",
        slot_start=_SLOT,
        optometrist_id=None,
        requested_at=EXAMPLE_TIME,
    ),
    "CancelBooking": lambda: CancelBooking(
        booking_id="bk-1", idempotency_key="idem-2", by=Actor.CUSTOMER, reason="travelling"
    ),
    "RescheduleBooking": lambda: RescheduleBooking(
        booking_id="bk-1",
        idempotency_key="idem-3",
        new_slot_start=_SLOT + dt.timedelta(hours=1),
        optometrist_id="opt-7",
    ),
    "CheckInBooking": lambda: CheckInBooking(
        booking_id="bk-1", idempotency_key="idem-4", staff_id="fd-1"
    ),
    "MarkNoShow": lambda: MarkNoShow(booking_id="bk-1", idempotency_key="idem-5"),
    "CompleteBooking": lambda: CompleteBooking(
        booking_id="bk-1", idempotency_key="idem-6", optometrist_id="opt-7"
    ),
    "PostExamResult": lambda: PostExamResult(
        booking_id="bk-1",
        idempotency_key="idem-7",
        optometrist_id="opt-7",
        summary="Mild myopia, new prescription -1.25/-1.00; check again in 12 months.",
    ),
    "JoinWaitlist": lambda: JoinWaitlist(
        waitlist_entry_id="wl-1",
        idempotency_key="idem-8",
        channel=Channel.WHATSAPP,
        customer=_CUSTOMER,
        exam_type="comprehensive",
        date_from=_DAY,
        date_to=_DAY + dt.timedelta(days=3),
        time_from="17:00",
        time_to="19:00",
    ),
    "LeaveWaitlist": lambda: LeaveWaitlist(
        waitlist_entry_id="wl-1", idempotency_key="idem-9", customer_ref="cust-42"
    ),
    "AcceptOffer": lambda: AcceptOffer(
        offer_token="of-1", idempotency_key="idem-10", customer_ref="cust-42", booking_id="bk-2"
    ),
    "DeclineOffer": lambda: DeclineOffer(
        offer_token="of-1", idempotency_key="idem-11", customer_ref="cust-42"
    ),
    # -- booking events --------------------------------------------------------------------
    "BookingConfirmed": lambda: BookingConfirmed(
        booking_id="bk-1",
        idempotency_key="idem-1",
        customer=_CUSTOMER,
        channel=Channel.WECHAT,
        exam_type="comprehensive",
        optometrist_id="opt-7",
        slot_start=_SLOT,
        slot_end=_SLOT + dt.timedelta(minutes=30),
        local_start=_local(_SLOT),
        timezone=EXAMPLE_TZ,
    ),
    "BookingRejected": lambda: BookingRejected(
        booking_id="bk-1",
        idempotency_key="idem-1",
        reason=RejectionReason.SLOT_TAKEN,
        detail="slot already booked",
        slot_start=_SLOT,
        alternatives=[_SLOT + dt.timedelta(minutes=15), _SLOT + dt.timedelta(minutes=45)],
    ),
    "BookingCancelled": lambda: BookingCancelled(
        booking_id="bk-1",
        idempotency_key="idem-2",
        customer_ref="cust-42",
        by=Actor.CUSTOMER,
        reason="travelling",
        late=False,
        minutes_before_start=2880,
        exam_type="comprehensive",
        optometrist_id="opt-7",
        slot_start=_SLOT,
        local_start=_local(_SLOT),
    ),
    "BookingRescheduled": lambda: BookingRescheduled(
        booking_id="bk-1",
        idempotency_key="idem-3",
        customer_ref="cust-42",
        exam_type="comprehensive",
        old_slot_start=_SLOT,
        old_optometrist_id="opt-7",
        old_local_start=_local(_SLOT),
        new_slot_start=_SLOT + dt.timedelta(hours=1),
        new_slot_end=_SLOT + dt.timedelta(hours=1, minutes=30),
        new_optometrist_id="opt-7",
        new_local_start=_local(_SLOT + dt.timedelta(hours=1)),
    ),
    "BookingCheckedIn": lambda: BookingCheckedIn(
        booking_id="bk-1", idempotency_key="idem-4", optometrist_id="opt-7", staff_id="fd-1"
    ),
    "BookingNoShow": lambda: BookingNoShow(
        booking_id="bk-1", idempotency_key="idem-5", slot_start=_SLOT
    ),
    "BookingCompleted": lambda: BookingCompleted(
        booking_id="bk-1", idempotency_key="idem-6", optometrist_id="opt-7"
    ),
    "BookingReassigned": lambda: BookingReassigned(
        booking_id="bk-1",
        customer_ref="cust-42",
        from_optometrist_id="opt-7",
        to_optometrist_id="opt-8",
        cause=RosterCause.SICK,
        slot_start=_SLOT,
        local_start=_local(_SLOT),
    ),
    "BookingDisplaced": lambda: BookingDisplaced(
        booking_id="bk-1",
        customer_ref="cust-42",
        cause=RosterCause.TRAINING,
        exam_type="comprehensive",
        optometrist_id="opt-7",
        slot_start=_SLOT,
        local_start=_local(_SLOT),
        alternatives=[_SLOT + dt.timedelta(days=1), _SLOT + dt.timedelta(days=1, hours=2)],
    ),
    "ExamResultPosted": lambda: ExamResultPosted(
        booking_id="bk-1",
        idempotency_key="idem-7",
        customer_ref="cust-42",
        optometrist_id="opt-7",
        summary="Mild myopia, new prescription -1.25/-1.00; check again in 12 months.",
    ),
    "WaitlistJoined": lambda: WaitlistJoined(
        waitlist_entry_id="wl-1",
        idempotency_key="idem-8",
        customer=_CUSTOMER,
        channel=Channel.WHATSAPP,
        exam_type="comprehensive",
        date_from=_DAY,
        date_to=_DAY + dt.timedelta(days=3),
        time_from="17:00",
        time_to="19:00",
    ),
    "WaitlistLeft": lambda: WaitlistLeft(
        waitlist_entry_id="wl-1", idempotency_key="idem-9", reason="customer"
    ),
    "SlotOffered": lambda: SlotOffered(
        offer_token="of-1",
        waitlist_entry_id="wl-1",
        customer_ref="cust-42",
        channel=Channel.WHATSAPP,
        exam_type="comprehensive",
        optometrist_id="opt-7",
        slot_start=_SLOT,
        local_start=_local(_SLOT),
        hold_until=EXAMPLE_TIME + dt.timedelta(minutes=15),
        rank=1,
    ),
    "OfferTaken": lambda: OfferTaken(
        offer_token="of-1", waitlist_entry_id="wl-1", booking_id="bk-2"
    ),
    "OfferExpired": lambda: OfferExpired(
        offer_token="of-1", waitlist_entry_id="wl-1", slot_start=_SLOT
    ),
    "OfferDeclined": lambda: OfferDeclined(offer_token="of-1", waitlist_entry_id="wl-1"),
    "CommandFailed": lambda: CommandFailed(
        command_type="RescheduleBooking",
        command_event_id=str(deterministic_event_id("example", "command")),
        idempotency_key="idem-3",
        booking_id="bk-404",
        reason=RejectionReason.UNKNOWN_BOOKING,
        detail="no booking bk-404 at this store",
    ),
    # -- roster ----------------------------------------------------------------------------
    "StoreRegistered": lambda: StoreRegistered(
        store_id=EXAMPLE_STORE,
        name="OptiSync 上海南京西路店",
        region=EXAMPLE_REGION,
        timezone=EXAMPLE_TZ,
        opening_hours=_OPENING,
        slot_minutes=15,
        locale="zh-CN",
    ),
    "StoreHoursChanged": lambda: StoreHoursChanged(
        store_id=EXAMPLE_STORE,
        opening_hours={"sun": [OpeningInterval(open="10:00", close="14:00")], **_OPENING},
        effective_from=_DAY,
        closed_dates=[dt.date(2024, 10, 1)],
    ),
    "ExamTypeDefined": lambda: ExamTypeDefined(
        code="comprehensive",
        name="Comprehensive eye exam",
        duration_minutes=30,
        required_skill="refraction",
    ),
    "OptometristJoined": lambda: OptometristJoined(
        optometrist_id="opt-7",
        name="Dr. Wang Fang",
        skills=["refraction", "contact_lens"],
        home_store_id=EXAMPLE_STORE,
        store_ids=[EXAMPLE_STORE, "sh-002"],
    ),
    "OptometristLeft": lambda: OptometristLeft(
        optometrist_id="opt-7", effective_date=dt.date(2024, 12, 1)
    ),
    "ShiftPublished": lambda: ShiftPublished(
        shift_id="sh-7-0503",
        optometrist_id="opt-7",
        store_id=EXAMPLE_STORE,
        date=_DAY,
        start="09:00",
        end="18:00",
        breaks=[LocalInterval(start="12:00", end="13:00")],
    ),
    "ShiftChanged": lambda: ShiftChanged(
        shift_id="sh-7-0503",
        optometrist_id="opt-7",
        store_id=EXAMPLE_STORE,
        date=_DAY,
        start="10:00",
        end="18:00",
        breaks=[LocalInterval(start="12:30", end="13:30")],
    ),
    "ShiftCancelled": lambda: ShiftCancelled(
        shift_id="sh-7-0503", optometrist_id="opt-7", store_id=EXAMPLE_STORE, date=_DAY
    ),
    "LeaveGranted": lambda: LeaveGranted(
        leave_id="lv-1",
        optometrist_id="opt-7",
        start_date=_DAY,
        end_date=_DAY + dt.timedelta(days=1),
        kind=LeaveKind.SICK,
    ),
    "TrainingScheduled": lambda: TrainingScheduled(
        training_id="tr-1", optometrist_id="opt-7", date=_DAY, start="14:00", end="16:00"
    ),
    # -- facts / availability / feedback ------------------------------------------------------
    "BookingFact": lambda: BookingFact(
        fact=FactKind.CANCELLED,
        store_id=EXAMPLE_STORE,
        region=EXAMPLE_REGION,
        exam_type="comprehensive",
        channel=Channel.WECHAT,
        local_date=dt.date(2024, 5, 1),
        lead_minutes=2880,
        cancelled_by=Actor.CUSTOMER,
        late=False,
    ),
    "AvailabilityViewed": lambda: AvailabilityViewed(
        store_id=EXAMPLE_STORE,
        local_date=dt.date(2024, 5, 1),
        viewed_date=_DAY,
        exam_type="comprehensive",
        channel=Channel.WEB,
    ),
    "StoreDayAvailability": lambda: StoreDayAvailability(
        store_id=EXAMPLE_STORE,
        local_date=_DAY,
        timezone=EXAMPLE_TZ,
        slot_minutes=15,
        exam_types={
            "comprehensive": ExamTypeSlots(
                duration_minutes=30, free_starts=["09:00", "09:15", "14:30"], free_count=3
            ),
            "contact_lens_fit": ExamTypeSlots(duration_minutes=45, free_starts=[], free_count=0),
        },
        computed_at=EXAMPLE_TIME,
        seq=17,
    ),
    "FeedbackReceived": lambda: FeedbackReceived(
        booking_id="bk-1",
        store_id=EXAMPLE_STORE,
        rating=5,
        comment_present=True,
        local_date=_DAY,
        channel=Channel.WECHAT,
        exam_type="comprehensive",
    ),
    # -- notify / messages / dlq --------------------------------------------------------------
    "DeliveryAttempted": lambda: DeliveryAttempted(
        notification_id="ntf-bk-1-confirmation",
        kind=NotificationKind.CONFIRMATION,
        channel=Channel.WECHAT,
        attempt=2,
        status=DeliveryStatus.SENT,
        latency_ms=38.5,
        source_event_id=str(deterministic_event_id("example", "confirmed")),
        booking_id="bk-1",
    ),
    "MessageReceived": lambda: MessageReceived(
        conversation_id="conv-1",
        channel=Channel.LINE,
        message_id="line-msg-1",
        customer_ref="cust-42",
        store_id=EXAMPLE_STORE,
        locale="en",
        text="Do you fit toric contact lenses?",
        received_at=EXAMPLE_TIME,
    ),
    "MessageRouted": lambda: MessageRouted(
        conversation_id="conv-1",
        message_id="line-msg-1",
        channel=Channel.LINE,
        customer_ref="cust-42",
        store_id=EXAMPLE_STORE,
        locale="en",
        text="Do you fit toric contact lenses?",
        role=StaffRole.CONTACT_LENS_SPECIALIST,
        rule_id="en-contact-lens",
        matched_keyword="contact lens",
    ),
    "DeadLetter": lambda: DeadLetter.from_record(
        topic="booking.events.v1",
        partition=3,
        offset=1042,
        key=EXAMPLE_STORE.encode(),
        value=b'{"type": "BookingConfirmed", "version": "9.0"}',
        headers=[("content-type", b"application/json"), ("traceparent", None)],
        error="unsupported major version 9",
        error_type="unsupported_version",
        failed_at=EXAMPLE_TIME,
        consumer="notify",
    ),
}


def example_payload(cls: type[P]) -> P:
    """A valid instance of ``cls`` (every catalogued event type has one)."""
    try:
        factory = _FACTORIES[cls.event_type]
    except (KeyError, AttributeError):
        raise KeyError(f"no example for {cls!r}") from None
    return cast(P, factory())


def example_envelope(cls: type[P], *, event_id: uuid.UUID | None = None) -> Envelope[P]:
    """``example_payload(cls)`` in an envelope with fixed ids and time."""
    return new_envelope(
        example_payload(cls),
        region=EXAMPLE_REGION,
        store_id=EXAMPLE_STORE,
        correlation_id="corr-1",
        causation_id=None,
        occurred_at=EXAMPLE_TIME,
        event_id=event_id or deterministic_event_id("example", cls.event_type),
    )


if set(_FACTORIES) != set(EVENT_TYPES):  # fail at import, not in some later test
    raise RuntimeError(f"examples missing for {sorted(set(EVENT_TYPES) - set(_FACTORIES))}")
