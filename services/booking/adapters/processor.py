"""The availability processor's message handling: decode-free, framework-free.

It applies one envelope (a booking command or a roster event) to the store's state held in
four key-value tables and returns the envelopes to publish. The stream entrypoint passes its
changelog-backed tables; tests pass plain dicts. Table layout (all co-partitioned by store):

* `configs`  store_id -> store configuration (hours, time zone, exam types, optometrists)
* `days`     "store_id|YYYY-MM-DD" -> shifts and busy intervals of one store-local day
* `bookings` booking_id -> booking record (no personal data beyond the customer ref)
* `idem`     "store_id|idempotency_key" -> {command event id, time, encoded outputs}
* `waitlist` store_id -> the store's waitlist entries and offers (`waitlist_desk`)

Idempotency records expire after a day; store-days and bookings once their day is past the
retention (`processor_retention`).

The stream commits each batch's outputs, table changes and input offsets in one transaction,
so a command is decided once. A client retry with the same idempotency key (or the same message
redelivered by any other path) replays its stored outputs instead of deciding twice.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas.envelope import Envelope, deterministic_event_id
from schemas.events.availability import ExamTypeSlots, StoreDayAvailability
from schemas.events.base import Actor, EventPayload, RejectionReason, local_iso
from schemas.events.booking import (
    AcceptOffer,
    BookingCancelled,
    BookingCheckedIn,
    BookingCommand,
    BookingCompleted,
    BookingConfirmed,
    BookingDisplaced,
    BookingNoShow,
    BookingReassigned,
    BookingRejected,
    BookingRescheduled,
    CancelBooking,
    CheckInBooking,
    CommandFailed,
    CompleteBooking,
    DeclineOffer,
    ExamResultPosted,
    JoinWaitlist,
    LeaveWaitlist,
    MarkNoShow,
    PostExamResult,
    RequestBooking,
    RescheduleBooking,
    RosterCause,
    WaitlistJoined,
)
from schemas.events.facts import BookingFact, FactKind
from schemas.events.roster import (
    ExamTypeDefined,
    LeaveGranted,
    OptometristJoined,
    OptometristLeft,
    ShiftCancelled,
    ShiftPublished,
    StoreHoursChanged,
    StoreRegistered,
    TrainingScheduled,
)
from schemas.serde import EncodedMessage, decode, encode
from services.booking.adapters.processor_state import (
    DecodedState,
    booking_from_json,
    booking_to_json,
    config_from_json,
    config_to_json,
    day_from_json,
    day_to_json,
    outputs_from_record,
    outputs_to_text,
)
from services.booking.adapters.waitlist_desk import WaitlistDesk, with_offers_hidden
from services.booking.domain import decisions
from services.booking.domain import waitlist as wl
from services.booking.domain.calendar import local_date, local_instant, local_interval, to_local
from services.booking.domain.model import (
    Booking,
    BookingStatus,
    Day,
    ExamSpec,
    HoursChange,
    Reason,
    Shift,
    StoreConfig,
)
from services.booking.domain.waitlist import DEFAULT_HOLD_S, DEFAULT_OFFERS

Table = MutableMapping[str, Any]
IDEMPOTENCY_TTL_S = 24 * 3600
# Bookings are forgotten a while after their day (`processor_retention`).
UNKNOWN_BOOKING = "no such booking, or its day is past the processor's retention"


@dataclass
class ProcessorTables:
    configs: Table
    days: Table
    bookings: Table
    idem: Table
    waitlist: Table = field(default_factory=dict)


def _epoch(instant: dt.datetime) -> int:
    return int(instant.timestamp())


def _utc(epoch: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


class AvailabilityProcessor:
    def __init__(
        self,
        tables: ProcessorTables,
        region: str,
        idempotency_ttl_s: int = IDEMPOTENCY_TTL_S,
        *,
        coalesce_views: bool = False,
        waitlist_offers: int = DEFAULT_OFFERS,
        waitlist_hold_s: int = DEFAULT_HOLD_S,
        waitlist_limits: wl.WaitlistLimits = wl.DEFAULT_LIMITS,
        decoded: DecodedState | None = None,
    ) -> None:
        self.t = tables
        self.decoded = decoded or DecodedState()
        self.waitlist = WaitlistDesk(self, waitlist_offers, waitlist_hold_s, waitlist_limits)
        self.region = region
        self.idempotency_ttl_s = idempotency_ttl_s
        # With `coalesce_views`, a store-day's availability view is computed once per batch
        # (`flush_views`) instead of after every change: the topic is compacted and readers
        # only want the latest view, and computing it is most of a decision's cost.
        self.coalesce_views = coalesce_views
        self._pending_views: dict[tuple[str, dt.date], tuple[Envelope[Any], dt.datetime]] = {}
        # Outputs already encoded for an idempotency record, by identity (the envelope is kept
        # so its id cannot be reused): publishing them reuses the bytes. Cleared with the views.
        self._encoded: dict[int, tuple[Envelope[Any], EncodedMessage]] = {}

    # ----------------------------------------------------------------------- entry point

    def handle(self, envelope: Envelope[Any], now: dt.datetime) -> list[Envelope[Any]]:
        payload = envelope.payload
        if isinstance(payload, BookingCommand):
            return self._command(envelope, payload, now)
        return self._roster(envelope, payload, now)

    def failed_internally(self, env: Envelope[Any], now: dt.datetime) -> Envelope[Any] | None:
        """The answer to a command the processor failed on (and dead-lettered), so that the
        request and its status URL are answered too; None for what is not a command."""
        if not isinstance(env.payload, BookingCommand):
            return None
        detail = "the command could not be processed; it was set aside for the operators"
        return self._failed(env, env.payload, RejectionReason.INTERNAL_ERROR, detail, now)

    def tick(self, now: dt.datetime) -> list[Envelope[Any]]:
        """Time-driven decisions (waitlist holds lapsing, entries expiring)."""
        return self.waitlist.tick(now)

    def due_stores(self, now: dt.datetime) -> list[str]:
        """The stores `tick_store` has something to decide for at `now`."""
        return self.waitlist.due(now)

    def tick_store(self, store_id: str, now: dt.datetime) -> list[Envelope[Any]]:
        return self.waitlist.tick_store(store_id, now)

    def expire_idempotency(self, now: dt.datetime) -> int:
        """Forget idempotency records older than the TTL. Records are kept in write order, so
        this stops at the first live one: the cost is the number expired, not the table size."""
        horizon = _epoch(now) - self.idempotency_ttl_s
        expired = []
        for key, record in self.t.idem.items():
            if record["at"] > horizon:
                break
            expired.append(key)
        for key in expired:
            del self.t.idem[key]
        return len(expired)

    # ----------------------------------------------------------------------- commands

    def _command(
        self, env: Envelope[Any], cmd: BookingCommand, now: dt.datetime
    ) -> list[Envelope[Any]]:
        idem_key = f"{env.store_id}|{cmd.idempotency_key}"
        record = self.t.idem.get(idem_key)
        if record is not None and record["at"] > _epoch(now) - self.idempotency_ttl_s:
            return self._repeat(env, cmd, record, now)
        outputs = self._decide(env, cmd, now)
        # Only the decision's own events are replayable; the availability view is
        # recomputed from current state on a replay.
        kept = [o for o in outputs if not isinstance(o.payload, StoreDayAvailability)]
        for output in kept:
            self._encoded[id(output)] = (output, encode(output))
        # Re-inserted at the end, so the table stays in write order for `expire_idempotency`.
        self.t.idem.pop(idem_key, None)
        self.t.idem[idem_key] = {
            "cmd": str(env.event_id),
            "fp": request_fingerprint(cmd),
            "at": _epoch(now),
            "outputs": outputs_to_text([self._encoded[id(o)][1].value.decode() for o in kept]),
        }
        return outputs

    def encoded(self, output: Envelope[Any]) -> EncodedMessage:
        """`encode(output)`, without encoding twice what an idempotency record already holds."""
        known = self._encoded.pop(id(output), None)
        if known is not None and known[0] is output:
            return known[1]
        return encode(output)

    def _repeat(
        self, env: Envelope[Any], cmd: BookingCommand, record: dict[str, Any], now: dt.datetime
    ) -> list[Envelope[Any]]:
        stored = [decode(v.encode()) for v in outputs_from_record(record["outputs"])]
        if record["cmd"] == str(env.event_id):
            # The same message again (redelivery after a crash): exactly the same outputs.
            return stored
        fingerprint = request_fingerprint(cmd)
        if record.get("fp", fingerprint) != fingerprint:
            # Another request under a used key: answering with the first request's result
            # would hand one customer another's booking (records before `fp` are trusted).
            detail = "this Idempotency-Key was already used for a different request"
            return [self._failed(env, cmd, Reason.IDEMPOTENCY_KEY_REUSED, detail, now)]
        # A client retry with the same key: the same result, without a second booking.
        first = stored[0].payload if stored else None
        if isinstance(first, BookingRejected | CommandFailed):  # the same refusal again
            return [self._derive(env, _refusal_for(first, env), now, "retry")]
        if isinstance(cmd, RequestBooking | AcceptOffer):  # both answer with a booking
            booking_id = first.booking_id if isinstance(first, BookingConfirmed) else None
            slot = cmd.slot_start if isinstance(cmd, RequestBooking) else None
            return [
                self._derive(
                    env,
                    BookingRejected(
                        booking_id=cmd.booking_id,
                        idempotency_key=cmd.idempotency_key,
                        reason=RejectionReason.DUPLICATE,
                        detail="this idempotency key was already used",
                        slot_start=slot,
                        existing_booking_id=booking_id,
                    ),
                    now,
                    "retry",
                )
            ]
        # A change already made with this key: the API answers with what that change left
        # (a booking, a waitlist entry, an offer), named by its event.
        decided = stored[0] if stored else None
        joined = (
            decided.payload if decided and isinstance(decided.payload, WaitlistJoined) else None
        )
        return [
            self._failed(
                env, cmd, Reason.DUPLICATE, "already done with this idempotency key", now,
                decided_event_id=str(decided.event_id) if decided else None,
                waitlist_entry_id=joined.waitlist_entry_id if joined else None,
            )
        ]  # fmt: skip

    def _decide(
        self, env: Envelope[Any], cmd: BookingCommand, now: dt.datetime
    ) -> list[Envelope[Any]]:
        cfg = self._config(env.store_id)
        if cfg is None or not cfg.registered:
            if isinstance(cmd, RequestBooking):
                return [self._rejected(env, cmd, Reason.UNKNOWN_STORE, "unknown store", (), now)]
            return [self._failed(env, cmd, Reason.UNKNOWN_STORE, "unknown store", now)]
        if isinstance(cmd, RequestBooking):
            return self._book(env, cfg, cmd, now)
        if isinstance(cmd, JoinWaitlist):
            return self.waitlist.join(env, cfg, cmd, now)
        if isinstance(cmd, LeaveWaitlist):
            return self.waitlist.leave(env, cfg, cmd, now)
        if isinstance(cmd, AcceptOffer):
            return self.waitlist.accept(env, cfg, cmd, now)
        if isinstance(cmd, DeclineOffer):
            return self.waitlist.decline(env, cfg, cmd, now)
        if isinstance(
            cmd,
            CancelBooking
            | RescheduleBooking
            | CheckInBooking
            | MarkNoShow
            | CompleteBooking
            | PostExamResult,
        ):
            booking = self._booking(env.store_id, cmd.booking_id)
        else:
            return [
                self._failed(
                    env, cmd, Reason.INVALID_TRANSITION, f"{env.type} is not handled yet", now
                )
            ]
        if booking is None:
            return [self._failed(env, cmd, Reason.UNKNOWN_BOOKING, UNKNOWN_BOOKING, now)]
        if isinstance(cmd, CancelBooking):
            return self._cancel(env, cfg, cmd, booking, now)
        if isinstance(cmd, RescheduleBooking):
            return self._reschedule(env, cfg, cmd, booking, now)
        if isinstance(cmd, PostExamResult):
            return self._result(env, cmd, booking, now)
        return self._transition(env, cfg, cmd, booking, now)

    def _result(
        self, env: Envelope[Any], cmd: PostExamResult, booking: Booking, now: dt.datetime
    ) -> list[Envelope[Any]]:
        """The optometrist's summary, for notify to send on: only after the exam took place."""
        if booking.status is not BookingStatus.COMPLETED:
            detail = f"a summary needs a completed booking, this one is {booking.status.value}"
            return [self._failed(env, cmd, Reason.INVALID_TRANSITION, detail, now)]
        event = ExamResultPosted(
            booking_id=booking.booking_id,
            idempotency_key=cmd.idempotency_key,
            customer_ref=booking.customer_ref,
            optometrist_id=cmd.optometrist_id,
            summary=cmd.summary,
        )
        return [self._derive(env, event, now)]

    def _book(
        self, env: Envelope[Any], cfg: StoreConfig, cmd: RequestBooking, now: dt.datetime
    ) -> list[Envelope[Any]]:
        start = _epoch(cmd.slot_start)
        day = self._day(cfg, local_date(start, cfg.timezone))
        request = decisions.BookRequest(
            booking_id=cmd.booking_id,
            customer_ref=cmd.customer.customer_ref,
            exam_type=cmd.exam_type,
            start=start,
            idempotency_key=cmd.idempotency_key,
            channel=cmd.channel.value,
            optometrist_id=cmd.optometrist_id,
        )
        outcome = self.waitlist.book(cfg, day, request, _epoch(now))
        requested = self._fact(
            env,
            cfg,
            FactKind.REQUESTED,
            cmd.exam_type,
            cmd.channel.value,
            now,
            lead_minutes=(start - _epoch(now)) // 60,
        )
        if isinstance(outcome, decisions.Rejected):
            out = [
                self._rejected(
                    env,
                    cmd,
                    outcome.reason,
                    outcome.detail,
                    outcome.alternatives,
                    now,
                    outcome.existing_booking_id,
                )
            ]
            if outcome.reason != Reason.DUPLICATE:
                out += [
                    requested,
                    self._fact(
                        env,
                        cfg,
                        FactKind.REJECTED,
                        cmd.exam_type,
                        cmd.channel.value,
                        now,
                        reason=outcome.reason,
                    ),
                ]
            return out
        booking = outcome.booking
        self._save_booking(booking)
        self._save_day(cfg.store_id, day)
        # Booked straight into a slot held for this customer's offer: that is their accept.
        taken = self.waitlist.taken_by(env, cfg, day, booking, now)
        offer = taken.accepted
        confirmed = BookingConfirmed(
            booking_id=booking.booking_id,
            idempotency_key=cmd.idempotency_key,
            customer=cmd.customer,
            channel=cmd.channel,
            exam_type=booking.exam_type,
            optometrist_id=booking.optometrist_id,
            slot_start=_utc(booking.start),
            slot_end=_utc(booking.end),
            local_start=local_iso(_utc(booking.start), cfg.timezone),
            timezone=cfg.timezone,
            waitlist_entry_id=offer.entry_id if offer else None,
            offer_token=offer.token if offer else None,
        )
        lead = (start - _epoch(now)) // 60
        kinds = [FactKind.CONFIRMED] + ([FactKind.WAITLIST_FILLED] if offer else [])
        return [
            self._derive(env, confirmed, now),
            requested,
            *(
                self._fact(
                    env, cfg, kind, booking.exam_type, booking.channel, now, lead_minutes=lead
                )
                for kind in kinds
            ),
            *taken.outputs,
            *self._view(env, cfg, day, now),
        ]

    def _cancel(
        self,
        env: Envelope[Any],
        cfg: StoreConfig,
        cmd: CancelBooking,
        booking: Booking,
        now: dt.datetime,
    ) -> list[Envelope[Any]]:
        day = self._day(cfg, booking.date)
        outcome = decisions.cancel(
            cfg, day, booking, _epoch(now), by_customer=cmd.by == Actor.CUSTOMER
        )
        if isinstance(outcome, decisions.Rejected):
            return [self._failed(env, cmd, outcome.reason, outcome.detail, now)]
        self._save_booking(outcome.booking)
        self._save_day(cfg.store_id, day)
        event = BookingCancelled(
            booking_id=booking.booking_id,
            idempotency_key=cmd.idempotency_key,
            customer_ref=booking.customer_ref,
            by=cmd.by,
            reason=cmd.reason,
            late=outcome.late,
            minutes_before_start=outcome.minutes_before_start,
            exam_type=booking.exam_type,
            optometrist_id=booking.optometrist_id,
            slot_start=_utc(booking.start),
            local_start=local_iso(_utc(booking.start), cfg.timezone),
        )
        return [
            self._derive(env, event, now),
            self._fact(
                env,
                cfg,
                FactKind.CANCELLED,
                booking.exam_type,
                booking.channel,
                now,
                lead_minutes=outcome.minutes_before_start,
                cancelled_by=cmd.by,
                late=outcome.late,
            ),
            *self.waitlist.freed(env, cfg, day, booking.start, booking.optometrist_id, now),
            *self._view(env, cfg, day, now),
        ]

    def _reschedule(
        self,
        env: Envelope[Any],
        cfg: StoreConfig,
        cmd: RescheduleBooking,
        booking: Booking,
        now: dt.datetime,
    ) -> list[Envelope[Any]]:
        new_start = _epoch(cmd.new_slot_start)
        old_day = self._day(cfg, booking.date)
        new_date = local_date(new_start, cfg.timezone)
        new_day = old_day if new_date == old_day.date else self._day(cfg, new_date)
        unmovable = decisions.move_refused(booking, _epoch(now))
        if unmovable is not None:  # before the holds: a hold must not hide why
            return [self._failed(env, cmd, unmovable.reason, unmovable.detail, now)]
        if new_start == booking.start and cmd.optometrist_id in (None, booking.optometrist_id):
            detail = "the booking is already at that time: nothing to move"
            return [self._failed(env, cmd, Reason.INVALID_TRANSITION, detail, now)]
        optometrist = self._around_holds(cfg, new_day, booking, new_start, cmd, now)
        if isinstance(optometrist, decisions.Rejected):
            return [self._failed(env, cmd, optometrist.reason, optometrist.detail, now)]
        outcome = decisions.reschedule(
            cfg, old_day, new_day, booking, new_start, _epoch(now), optometrist
        )
        if isinstance(outcome, decisions.Rejected):
            return [self._failed(env, cmd, outcome.reason, outcome.detail, now)]
        new = outcome.new
        self._save_booking(new)
        self._save_day(cfg.store_id, old_day)
        outputs = []
        if new_day is not old_day:
            self._save_day(cfg.store_id, new_day)
            outputs.extend(self._view(env, cfg, new_day, now))
        event = BookingRescheduled(
            booking_id=booking.booking_id,
            idempotency_key=cmd.idempotency_key,
            customer_ref=booking.customer_ref,
            exam_type=booking.exam_type,
            old_slot_start=_utc(booking.start),
            old_optometrist_id=booking.optometrist_id,
            old_local_start=local_iso(_utc(booking.start), cfg.timezone),
            new_slot_start=_utc(new.start),
            new_slot_end=_utc(new.end),
            new_optometrist_id=new.optometrist_id,
            new_local_start=local_iso(_utc(new.start), cfg.timezone),
        )
        taken = self.waitlist.taken_by(env, cfg, new_day, new, now)
        return [
            self._derive(env, event, now),
            *taken.outputs,
            self._fact(
                env,
                cfg,
                FactKind.RESCHEDULED,
                booking.exam_type,
                booking.channel,
                now,
                lead_minutes=(new.start - _epoch(now)) // 60,
            ),
            *self.waitlist.freed(env, cfg, old_day, booking.start, booking.optometrist_id, now),
            *self._view(env, cfg, old_day, now),
            *outputs,
        ]

    def _around_holds(
        self,
        cfg: StoreConfig,
        day: Day,
        booking: Booking,
        start: int,
        cmd: RescheduleBooking,
        now: dt.datetime,
    ) -> str | decisions.Rejected | None:
        """The optometrist a reschedule may use without breaking a waitlist hold: the asked
        one, else the first free one outside the holds (None: no hold in the way)."""
        holds = self.waitlist.holds(cfg.store_id, _epoch(now))
        exam = cfg.exam_types.get(booking.exam_type)
        if not holds or exam is None:
            return cmd.optometrist_id
        blocked = wl.with_holds(day, holds, booking.customer_ref, _epoch(now))
        who = decisions.candidates(
            cfg, blocked, exam, start, cmd.optometrist_id, ignore_booking=booking.booking_id
        )
        if not isinstance(who, list):
            return cmd.optometrist_id  # refused for another reason: the decision says which
        if who:  # the customer's own optometrist when free, as without holds
            return booking.optometrist_id if booking.optometrist_id in who else who[0]
        end = start + exam.duration_minutes * 60
        hold = wl.held_against(
            holds, start, end, cmd.optometrist_id, booking.customer_ref, _epoch(now)
        )
        if hold is None:
            return cmd.optometrist_id
        return decisions.Rejected(Reason.HELD, "held for a waitlist offer")

    def _transition(
        self,
        env: Envelope[Any],
        cfg: StoreConfig,
        cmd: BookingCommand,
        booking: Booking,
        now: dt.datetime,
    ) -> list[Envelope[Any]]:
        target, fact = {
            CheckInBooking: (BookingStatus.CHECKED_IN, FactKind.CHECKED_IN),
            MarkNoShow: (BookingStatus.NO_SHOW, FactKind.NO_SHOW),
            CompleteBooking: (BookingStatus.COMPLETED, FactKind.COMPLETED),
        }[type(cmd)]
        outcome = decisions.transition(booking, target, _epoch(now))
        if isinstance(outcome, decisions.Rejected):
            return [self._failed(env, cmd, outcome.reason, outcome.detail, now)]
        self._save_booking(outcome)
        outputs = []
        if target == BookingStatus.NO_SHOW:
            # A no-show frees the rest of the interval for walk-ins.
            day = self._day(cfg, booking.date)
            if day.release(booking.booking_id) is not None:
                day.seq += 1
                self._save_day(cfg.store_id, day)
                outputs.extend(self._view(env, cfg, day, now))
        event: EventPayload
        if isinstance(cmd, CheckInBooking):
            event = BookingCheckedIn(
                booking_id=booking.booking_id,
                idempotency_key=cmd.idempotency_key,
                optometrist_id=booking.optometrist_id,
                staff_id=cmd.staff_id,
            )
        elif isinstance(cmd, MarkNoShow):
            event = BookingNoShow(
                booking_id=booking.booking_id,
                idempotency_key=cmd.idempotency_key,
                slot_start=_utc(booking.start),
            )
        else:
            event = BookingCompleted(
                booking_id=booking.booking_id,
                idempotency_key=cmd.idempotency_key,
                optometrist_id=booking.optometrist_id,
            )
        return [
            self._derive(env, event, now),
            self._fact(env, cfg, fact, booking.exam_type, booking.channel, now),
            *outputs,
        ]

    # ----------------------------------------------------------------------- roster

    def _roster(
        self, env: Envelope[Any], event: EventPayload, now: dt.datetime
    ) -> list[Envelope[Any]]:
        """Apply a roster change to the store's state, then re-home the bookings it strands."""
        store_id = env.store_id
        cfg = self._config(store_id, private=True) or StoreConfig(store_id, timezone="UTC")
        before = config_to_json(cfg)
        touched: list[Day] = []
        cause = RosterCause.SHIFT_CHANGED
        if isinstance(event, StoreRegistered):
            cfg.timezone = event.timezone
            cfg.slot_minutes = event.slot_minutes
            cfg.opening_hours = _hours(event.opening_hours)
            cfg.region = event.region
            cfg.locale = event.locale
            cfg.registered = True
        elif isinstance(event, StoreHoursChanged):
            touched, cause = self._hours_changed(cfg, event, now), RosterCause.STORE_HOURS_CHANGED
        elif isinstance(event, ExamTypeDefined):
            cfg.exam_types[event.code] = ExamSpec(
                event.code, event.duration_minutes, event.required_skill, event.active
            )
        elif isinstance(event, OptometristJoined):
            if store_id in event.store_ids:
                cfg.optometrists[event.optometrist_id] = frozenset(event.skills)
                cfg.departures.pop(event.optometrist_id, None)
        elif isinstance(event, OptometristLeft):
            # Announced ahead: bookable until the day before `effective_date`.
            cfg.departures[event.optometrist_id] = event.effective_date
            first = max(event.effective_date, local_date(_epoch(now), cfg.timezone))
            touched = [d for d in self._days_from(cfg, now) if d.date >= first]
            cause = RosterCause.OPTOMETRIST_LEFT
        elif isinstance(event, ShiftPublished | ShiftCancelled):
            touched = [self._day(cfg, event.date)]
            if isinstance(event, ShiftCancelled):
                touched[0].shifts.pop(event.shift_id, None)
                cause = RosterCause.SHIFT_CANCELLED
            else:
                touched[0].shifts[event.shift_id] = Shift(
                    event.shift_id,
                    event.optometrist_id,
                    event.date,
                    event.start,
                    event.end,
                    tuple((b.start, b.end) for b in event.breaks),
                )
        elif isinstance(event, LeaveGranted):
            touched, cause = self._leave(cfg, event), RosterCause(event.kind.value)
        elif isinstance(event, TrainingScheduled):
            touched, cause = self._training(cfg, event), RosterCause.TRAINING
        after = config_to_json(cfg)
        self.t.configs[store_id] = after
        if isinstance(event, STORE_WIDE) and after != before:
            # Hours, exam types or skills changed: every day on from today may now offer
            # other starts (and strand bookings), so each is re-homed and its view published.
            touched = self._days_from(cfg, now)
            if isinstance(event, StoreRegistered):
                cause = RosterCause.STORE_HOURS_CHANGED
        outputs: list[Envelope[Any]] = []
        offered_to: set[str] = set()  # waitlist entries this change offered a slot
        for day in touched:
            day.seq += 1
            outputs += self._rehome(env, cfg, day, cause, now)
            outputs += self.waitlist.reseat(env, cfg, day, now)  # offers after bookings
            self._save_day(store_id, day)
            if isinstance(event, MAY_ADD_CAPACITY) and cfg.registered:
                who = getattr(event, "optometrist_id", None)
                outputs += self.waitlist.new_capacity(env, cfg, day, who, now, offered_to)
            if cfg.registered:
                outputs += self._view(env, cfg, day, now)
        return outputs

    def _hours_changed(
        self, cfg: StoreConfig, event: StoreHoursChanged, now: dt.datetime
    ) -> list[Day]:
        """New hours at once, or from `effective_from` (as the booking API's catalog reads
        them); the closed dates are replaced. The days it touches from today on."""
        closed_before, cfg.closed_dates = cfg.closed_dates, set(event.closed_dates)
        if event.effective_from is None:
            cfg.opening_hours = _hours(event.opening_hours)
            cfg.slot_minutes = event.slot_minutes or cfg.slot_minutes
            return self._days_from(cfg, now)
        hours = _hours(event.opening_hours)
        cfg.schedule(HoursChange(event.effective_from, hours, event.slot_minutes))
        closed_or_reopened = closed_before ^ cfg.closed_dates
        return [
            day
            for day in self._days_from(cfg, now)
            if day.date >= event.effective_from or day.date in closed_or_reopened
        ]

    def _days_from(self, cfg: StoreConfig, now: dt.datetime) -> list[Day]:
        """Every stored day of the store from today (store-local) on."""
        today = local_date(_epoch(now), cfg.timezone).isoformat()
        prefix = f"{cfg.store_id}|"
        dates = sorted(k[len(prefix) :] for k in self.t.days if k.startswith(prefix))
        return [self._day(cfg, dt.date.fromisoformat(d)) for d in dates if d >= today]

    def _leave(self, cfg: StoreConfig, event: LeaveGranted) -> list[Day]:
        days = []
        date = event.start_date
        while date <= event.end_date:
            day = self._day(cfg, date)
            start = local_instant(date, 0, cfg.timezone) or 0
            end = local_instant(date + dt.timedelta(days=1), 0, cfg.timezone) or start + 86400
            day.absences[f"{event.leave_id}|{date.isoformat()}"] = (
                event.optometrist_id, start, end,
            )  # fmt: skip
            days.append(day)
            date += dt.timedelta(days=1)
        return days

    def _training(self, cfg: StoreConfig, event: TrainingScheduled) -> list[Day]:
        """The training's absence, filed under every local day of this store it covers: in
        another store's time zone its date can be a different day here."""
        if event.start_utc is not None and event.end_utc is not None:
            interval: tuple[int, int] | None = (_epoch(event.start_utc), _epoch(event.end_utc))
        else:
            tz = event.timezone or cfg.timezone
            interval = local_interval(event.date, event.start, event.end, tz)
        if interval is None:
            return []
        first = local_date(interval[0], cfg.timezone)
        last = local_date(max(interval[0], interval[1] - 1), cfg.timezone)
        days = []
        for offset in range((last - first).days + 1):
            day = self._day(cfg, first + dt.timedelta(days=offset))
            day.absences[event.training_id] = (event.optometrist_id, *interval)
            days.append(day)
        return days

    def _rehome(
        self, env: Envelope[Any], cfg: StoreConfig, day: Day, cause: RosterCause, now: dt.datetime
    ) -> list[Envelope[Any]]:
        outputs: list[Envelope[Any]] = []
        epoch = _epoch(now)
        held = wl.held_intervals(self.waitlist.holds(cfg.store_id, epoch), "", epoch)
        for outcome in decisions.rehome(cfg, day, epoch, held):
            booking = self._booking(cfg.store_id, outcome.busy.booking_id)
            if booking is None:
                continue
            start = _utc(booking.start)
            if isinstance(outcome, decisions.Reassigned):
                booking.optometrist_id = outcome.to_optometrist
                event: EventPayload = BookingReassigned(
                    booking_id=booking.booking_id, customer_ref=booking.customer_ref,
                    from_optometrist_id=outcome.from_optometrist,
                    to_optometrist_id=outcome.to_optometrist, cause=cause, slot_start=start,
                    local_start=local_iso(start, cfg.timezone),
                )  # fmt: skip
            else:
                booking.status = BookingStatus.DISPLACED
                event = BookingDisplaced(
                    booking_id=booking.booking_id, customer_ref=booking.customer_ref,
                    cause=cause, exam_type=booking.exam_type,
                    optometrist_id=outcome.optometrist, slot_start=start,
                    local_start=local_iso(start, cfg.timezone),
                    alternatives=[_utc(a) for a in outcome.alternatives],
                )  # fmt: skip
            booking.version += 1
            self._save_booking(booking)
            kind = (
                FactKind.REASSIGNED
                if isinstance(outcome, decisions.Reassigned)
                else FactKind.DISPLACED
            )
            fact = self._fact_payload(cfg, kind, booking.exam_type, booking.channel, now)
            outputs.append(self._derive(env, event, now, booking.booking_id))
            outputs.append(self._derive(env, fact, now, booking.booking_id, kind.value))
            if isinstance(outcome, decisions.Reassigned):  # into a held slot: its offers go
                outputs += self.waitlist.taken_by(env, cfg, day, booking, now).outputs
        return outputs

    # ----------------------------------------------------------------------- state access

    def _config(self, store_id: str, private: bool = False) -> StoreConfig | None:
        """The store's configuration: shared and read-only unless `private` (to change it)."""
        data = self.t.configs.get(store_id)
        if data is None:
            return None
        if private:
            return config_from_json(data)
        cfg = self.decoded.configs.get(store_id, data)
        if cfg is None:
            cfg = config_from_json(data)
            self.decoded.configs.put(store_id, data, cfg)
        return cfg

    def _day(self, cfg: StoreConfig, date: dt.date, shared: bool = False) -> Day:
        """The stored day, the caller's own to change (and `_save_day`); with `shared`, the
        cached decode itself, which the caller only reads."""
        key = f"{cfg.store_id}|{date.isoformat()}"
        data = self.t.days.get(key)
        if data is None:
            return Day(date)
        day = self.decoded.days.get(key, data)
        if day is None:
            day = day_from_json(data)
            self.decoded.days.put(key, data, day)
        return day if shared else day.copy()

    def _save_day(self, store_id: str, day: Day) -> None:
        key = f"{store_id}|{day.date.isoformat()}"
        data = self.t.days[key] = day_to_json(day)
        self.decoded.days.put(key, data, day.copy())

    def _booking(self, store_id: str, booking_id: str) -> Booking | None:
        data = self.t.bookings.get(booking_id)
        if data is None or data["store_id"] != store_id:
            return None
        return booking_from_json(data)

    def _save_booking(self, booking: Booking) -> None:
        self.t.bookings[booking.booking_id] = booking_to_json(booking)

    # ----------------------------------------------------------------------- outputs

    def _derive(
        self, env: Envelope[Any], payload: EventPayload, now: dt.datetime, *salt: str
    ) -> Envelope[Any]:
        # Deterministic ids: a replayed command yields byte-identical events.
        event_id = deterministic_event_id(str(env.event_id), payload.event_type, *salt)
        return env.derive(payload, occurred_at=now, region=self.region, event_id=event_id)

    def _rejected(
        self,
        env: Envelope[Any],
        cmd: RequestBooking,
        reason: Reason,
        detail: str,
        alternatives: tuple[int, ...],
        now: dt.datetime,
        existing: str | None = None,
    ) -> Envelope[Any]:
        return self._derive(
            env,
            BookingRejected(
                booking_id=cmd.booking_id,
                idempotency_key=cmd.idempotency_key,
                reason=RejectionReason(reason.value),
                detail=detail,
                slot_start=cmd.slot_start,
                alternatives=[_utc(a) for a in alternatives],
                existing_booking_id=existing,
            ),
            now,
        )

    def _failed(
        self,
        env: Envelope[Any],
        cmd: BookingCommand,
        reason: Reason | RejectionReason,
        detail: str,
        now: dt.datetime,
        decided_event_id: str | None = None,
        waitlist_entry_id: str | None = None,
    ) -> Envelope[Any]:
        return self._derive(
            env,
            CommandFailed(
                command_type=env.type,
                command_event_id=str(env.event_id),
                idempotency_key=cmd.idempotency_key,
                booking_id=getattr(cmd, "booking_id", None),
                reason=RejectionReason(reason.value),
                detail=detail,
                decided_event_id=decided_event_id,
                waitlist_entry_id=waitlist_entry_id,
            ),
            now,
            str(_epoch(now)) if reason == Reason.DUPLICATE else "",
        )

    def _fact(
        self,
        env: Envelope[Any],
        cfg: StoreConfig,
        kind: FactKind,
        exam_type: str,
        channel: str,
        now: dt.datetime,
        **extra: Any,
    ) -> Envelope[Any]:
        fact = self._fact_payload(cfg, kind, exam_type, channel, now, **extra)
        return self._derive(env, fact, now, kind.value)

    def _fact_payload(
        self,
        cfg: StoreConfig,
        kind: FactKind,
        exam_type: str,
        channel: str,
        now: dt.datetime,
        **extra: Any,
    ) -> BookingFact:
        """A funnel fact dated the store-local day it happened (lead_minutes says how far
        ahead the slot is)."""
        return BookingFact(
            fact=kind,
            store_id=cfg.store_id,
            region=cfg.region or self.region,
            exam_type=exam_type,
            channel=channel,
            local_date=local_date(_epoch(now), cfg.timezone),
            **extra,
        )

    def _view(
        self, env: Envelope[Any], cfg: StoreConfig, day: Day, now: dt.datetime
    ) -> list[Envelope[Any]]:
        if not self.coalesce_views:
            return [self._availability(env, cfg, day, now)]
        self._pending_views[(cfg.store_id, day.date)] = (env, now)
        return []

    def flush_views(self) -> list[Envelope[Any]]:
        """The latest availability view of every store-day changed since the last flush."""
        views = []
        for (store_id, date), (env, now) in self._pending_views.items():
            cfg = self._config(store_id)
            if cfg is not None:
                views.append(self._availability(env, cfg, self._day(cfg, date, shared=True), now))
        self._pending_views.clear()
        self._encoded.clear()
        return views

    def _availability(
        self, env: Envelope[Any], cfg: StoreConfig, day: Day, now: dt.datetime
    ) -> Envelope[Any]:
        view: dict[str, ExamTypeSlots] = {}
        epoch = _epoch(now)
        day = with_offers_hidden(day, self.waitlist.holds(cfg.store_id, epoch), epoch)
        windows = decisions.free_windows_by_optometrist(cfg, day)  # shared by the exam types
        for code, exam in sorted(cfg.exam_types.items()):
            if not exam.active:
                continue
            free = decisions.free_starts(cfg, day, code, windows)
            walls = [_wall(s, cfg.timezone) for s, _ in free]
            view[code] = ExamTypeSlots(
                duration_minutes=exam.duration_minutes,
                free_starts=[hhmm for hhmm, _ in walls],
                free_count=len(free),
                capacity=[n for _, n in free],
                second_run=[i for i, (_, fold) in enumerate(walls) if fold],
            )
        payload = StoreDayAvailability(
            store_id=cfg.store_id,
            local_date=day.date,
            timezone=cfg.timezone,
            slot_minutes=decisions.slot_minutes_on(cfg, day.date),
            exam_types=view,
            computed_at=now,
            seq=day.seq,
        )
        return self._derive(env, payload, now, day.date.isoformat(), str(day.seq))


# Roster events that change what every day of the store offers, not one day's.
STORE_WIDE = (StoreRegistered, ExamTypeDefined, OptometristJoined)
# ... and those that may open capacity: the waitlist is offered what they free.
MAY_ADD_CAPACITY = (ShiftPublished, StoreHoursChanged, *STORE_WIDE)


def _hours(opening_hours: dict[Any, Any]) -> dict[str, list[tuple[str, str]]]:
    return {day: [(i.open, i.close) for i in intervals] for day, intervals in opening_hours.items()}


@functools.lru_cache(maxsize=1 << 16)  # a day's view repeats its slots at every change
def _wall(epoch: int, tz: str) -> tuple[str, int]:
    """A start's local wall time, and its fold: 1 in the second run of a repeated hour."""
    local = to_local(epoch, tz)
    return local.strftime("%H:%M"), local.fold


# Fields a client's retry sends anew: ids and times the API makes up for each request.
_FRESH_PER_REQUEST: dict[type[BookingCommand], frozenset[str]] = {
    RequestBooking: frozenset({"booking_id", "requested_at"}),
    AcceptOffer: frozenset({"booking_id"}),
    JoinWaitlist: frozenset({"waitlist_entry_id"}),
}


def request_fingerprint(cmd: BookingCommand) -> str:
    """What makes two commands with one idempotency key the same request: their type and
    every field a retry repeats."""
    skip = {"idempotency_key", *_FRESH_PER_REQUEST.get(type(cmd), ())}
    fields = cmd.model_dump(mode="json", exclude=skip)
    raw = orjson.dumps([cmd.event_type, fields], option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


def _refusal_for(refusal: BookingRejected | CommandFailed, env: Envelope[Any]) -> EventPayload:
    """A stored refusal, answering the command `env` now."""
    if isinstance(refusal, CommandFailed):
        return refusal.model_copy(update={"command_event_id": str(env.event_id)})
    return refusal.model_copy()
