"""The availability processor's waitlist: commands, offers on freed capacity, holds, expiry.

Decisions are the pure functions of `services.booking.domain.waitlist`; this module keeps one
store's waitlist (entries and offers) in the processor's `waitlist` table and turns each
decision into events. Living in the processor (the store's single writer) is what makes the
first accept win atomically and a held slot unbookable for anyone outside the offer.

Table value per store: {"state": <entries and offers>, "next_due": epoch when an offer's hold
lapses or an entry's window passes (None: nothing due), "held_until": last live hold's end}.
Both times let the hot booking path and the per-batch tick skip stores without a live hold or
anything due, without decoding their state.
"""

from __future__ import annotations

import datetime as dt
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import orjson

from optisync_common.logging import get_logger
from optisync_common.txstream import MAX_RECORD_BYTES
from schemas.envelope import Envelope, deterministic_event_id, new_envelope
from schemas.events.base import EventPayload, RejectionReason, local_iso
from schemas.events.booking import (
    AcceptOffer,
    BookingConfirmed,
    BookingRejected,
    Customer,
    DeclineOffer,
    JoinWaitlist,
    LeaveWaitlist,
    OfferDeclined,
    OfferExpired,
    OfferTaken,
    SlotOffered,
    WaitlistJoined,
    WaitlistLeft,
)
from schemas.events.facts import FactKind
from services.booking.domain import decisions
from services.booking.domain import waitlist as wl
from services.booking.domain.calendar import local_date
from services.booking.domain.model import Booking, Day, Reason, StoreConfig

if TYPE_CHECKING:
    from services.booking.adapters.processor import AvailabilityProcessor

# Settled offers and entries are kept this long after their slot (for replies and the staff
# view's history), then dropped so a store's waitlist record stays small.
KEEP_SETTLED_S = 2 * 86400
# Joins are refused past this record size, so the offers of the entries already waiting
# still fit under the changelog's record limit.
WAITLIST_RECORD_BUDGET = MAX_RECORD_BYTES // 2
# Offers are how the record grows after that: past this size freed capacity goes back to
# everyone instead (a cancellation must never fail for its waitlist). The rest is headroom for
# what one command offers at once (a shift offered to every waiting entry is counted as it goes).
OFFERS_BUDGET = MAX_RECORD_BYTES * 2 // 3

log = get_logger(__name__)


@dataclass(frozen=True)
class TakenBy:
    """What a booking did to live offers: the customer's own offer it accepted, if any, and
    the events (OfferTaken for the others, the entry filled)."""

    accepted: wl.Offer | None = None
    outputs: list[Envelope[Any]] = field(default_factory=list)


def _occupies(booking: Booking, offer: wl.Offer) -> bool:
    same_optometrist = booking.optometrist_id == offer.optometrist_id
    return same_optometrist and booking.start < offer.end and offer.start < booking.end


def _epoch(instant: dt.datetime) -> int:
    return int(instant.timestamp())


def _utc(epoch: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


class WaitlistDesk:
    def __init__(
        self,
        processor: AvailabilityProcessor,
        offers: int,
        hold_s: int,
        limits: wl.WaitlistLimits = wl.DEFAULT_LIMITS,
    ) -> None:
        # Part of its processor, so it refers back weakly: the stream makes a processor per
        # task batch, and with the two referring to each other every one of them was left for
        # the cyclic collector (five objects a batch, nearly all of its garbage).
        self._processor = weakref.ref(processor)
        self.k = offers
        self.hold_s = hold_s
        self.limits = limits

    @property
    def p(self) -> AvailabilityProcessor:
        processor = self._processor()
        if processor is None:
            raise RuntimeError("a waitlist desk used after its processor")
        return processor

    # ----------------------------------------------------------------------- state

    def _record(self, store_id: str) -> dict[str, Any] | None:
        return self.p.t.waitlist.get(store_id)

    def state(self, store_id: str) -> wl.WaitlistState:
        record = self._record(store_id)
        return wl.state_from_json(record["state"]) if record else wl.WaitlistState()

    def save(self, cfg: StoreConfig, state: wl.WaitlistState, now: int) -> None:
        horizon = now - KEEP_SETTLED_S
        offers = {
            t: o
            for t, o in state.offers.items()
            if o.state == wl.OfferState.LIVE or o.end > horizon
        }
        kept_entries = {o.entry_id for o in offers.values()}
        entries = {
            i: e
            for i, e in state.entries.items()
            if e.status == wl.EntryStatus.WAITING or i in kept_entries
        }
        held = [o for o in offers.values() if o.state == wl.OfferState.LIVE]
        waiting = [e for e in entries.values() if e.status == wl.EntryStatus.WAITING]
        dues = [o.expires_at for o in held] + [wl.entry_expires_at(cfg, e) for e in waiting]
        self.p.t.waitlist[cfg.store_id] = {
            "state": wl.state_to_json(wl.WaitlistState(entries, offers)),
            "next_due": min(dues, default=None),
            "held_until": max((o.expires_at for o in held), default=None),
        }

    def _record_bytes(self, store_id: str) -> int:
        record = self._record(store_id)
        return len(orjson.dumps(record)) if record is not None else 0

    def _offers_per_slot(self, store_id: str) -> int:
        """How many offers a freed slot gets: `k`, or none while the record has no room."""
        size = self._record_bytes(store_id)
        if size <= OFFERS_BUDGET:
            return self.k
        log.warning("waitlist_offers_paused", store_id=store_id, record_bytes=size)
        return 0

    def holds(self, store_id: str, now: int) -> list[wl.Hold]:
        """The store's live holds; cheap when there are none (the common case)."""
        record = self._record(store_id)
        if record is None or record["held_until"] is None or record["held_until"] <= now:
            return []
        return wl.holds(self.state(store_id).offers.values(), now)

    def book(
        self, cfg: StoreConfig, day: Day, request: decisions.BookRequest, now: int
    ) -> decisions.Accepted | decisions.Rejected:
        """A general booking decision that respects the store's live holds."""
        return wl.book_around_holds(cfg, day, self.holds(cfg.store_id, now), request, now)

    # ----------------------------------------------------------------------- commands

    def join(
        self, env: Envelope[Any], cfg: StoreConfig, cmd: JoinWaitlist, now: dt.datetime
    ) -> list[Envelope[Any]]:
        state, epoch = self.state(cfg.store_id), _epoch(now)
        refused = self._join_refusal(cfg, state, cmd, epoch) or self._full(cfg.store_id, state, cmd)
        if refused is not None:
            return [self.p._failed(env, cmd, refused[0], refused[1], now)]
        entry = wl.WaitlistEntry(
            entry_id=cmd.waitlist_entry_id,
            customer_ref=cmd.customer.customer_ref,
            exam_type=cmd.exam_type,
            first_date=cmd.date_from,
            last_date=cmd.date_to,
            windows=wl.windows_of(cmd.time_from, cmd.time_to),
            optometrist_id=cmd.optometrist_id,
            joined_at=wl.join_order(state, epoch),
            priority=cmd.priority,
            channel=cmd.channel.value,
        )
        state.apply(entries=[entry])
        self.save(cfg, state, epoch)
        joined = WaitlistJoined(
            **cmd.model_dump(include={"waitlist_entry_id", "idempotency_key", "customer"}),
            channel=cmd.channel, exam_type=cmd.exam_type, optometrist_id=cmd.optometrist_id,
            priority=cmd.priority,
            date_from=cmd.date_from, date_to=cmd.date_to,
            time_from=cmd.time_from, time_to=cmd.time_to,
        )  # fmt: skip
        fact = self.p._fact(
            env, cfg, FactKind.WAITLIST_JOINED, cmd.exam_type, cmd.channel.value, now
        )
        return [self.p._derive(env, joined, now), fact]

    @staticmethod
    def _join_refusal(
        cfg: StoreConfig, state: wl.WaitlistState, cmd: JoinWaitlist, now: int
    ) -> tuple[Reason, str] | None:
        exam = cfg.exam_types.get(cmd.exam_type)
        if exam is None or not exam.active:
            return Reason.UNKNOWN_EXAM_TYPE, f"no exam type {cmd.exam_type!r} at this store"
        if cmd.optometrist_id is not None and cmd.optometrist_id not in cfg.optometrists:
            return Reason.NO_SKILL, f"no optometrist {cmd.optometrist_id!r} at this store"
        if cmd.waitlist_entry_id in state.entries:
            return Reason.DUPLICATE, "this waitlist entry already exists"
        if cmd.date_to < local_date(now, cfg.timezone):
            return Reason.IN_PAST, "the requested days have passed"
        return None

    def _full(
        self, store_id: str, state: wl.WaitlistState, cmd: JoinWaitlist
    ) -> tuple[Reason, str] | None:
        over = wl.over_limits(state, cmd.customer.customer_ref, self.limits)
        if over is not None:
            return Reason.WAITLIST_FULL, over
        # Entries are a guess at the record's size; offers take room too (each freed slot is
        # offered to entries until one accepts). Past half the record limit, joins wait.
        if self._record_bytes(store_id) > WAITLIST_RECORD_BUDGET:
            return (
                Reason.WAITLIST_FULL,
                "the store's waitlist is full (its offers take too much room)",
            )
        return None

    def leave(
        self, env: Envelope[Any], cfg: StoreConfig, cmd: LeaveWaitlist, now: dt.datetime
    ) -> list[Envelope[Any]]:
        state, epoch = self.state(cfg.store_id), _epoch(now)
        given_up = wl.leave(state, cmd.waitlist_entry_id, cmd.customer_ref)
        if given_up is None:
            detail = "no waiting entry with this id for this customer"
            return [self.p._failed(env, cmd, Reason.INVALID_TRANSITION, detail, now)]
        left = WaitlistLeft(
            waitlist_entry_id=cmd.waitlist_entry_id,
            idempotency_key=cmd.idempotency_key,
            reason="customer",
        )
        out = [self.p._derive(env, left, now)]
        out += self._declined(env, cfg, state, given_up, now)
        self.save(cfg, state, epoch)
        return out

    def decline(
        self, env: Envelope[Any], cfg: StoreConfig, cmd: DeclineOffer, now: dt.datetime
    ) -> list[Envelope[Any]]:
        state, epoch = self.state(cfg.store_id), _epoch(now)
        result = wl.decline(state.offers, cmd.offer_token, cmd.customer_ref, epoch)
        if isinstance(result, wl.Refused):
            reason = RejectionReason(result.reason.value)
            return [self.p._failed(env, cmd, reason, result.detail, now)]
        state.apply([result])
        out = self._declined(env, cfg, state, [result], now)
        self.save(cfg, state, epoch)
        return out

    def accept(
        self, env: Envelope[Any], cfg: StoreConfig, cmd: AcceptOffer, now: dt.datetime
    ) -> list[Envelope[Any]]:
        state, epoch = self.state(cfg.store_id), _epoch(now)
        result = wl.accept(state.offers, cmd.offer_token, cmd.customer_ref, cmd.booking_id, epoch)
        if isinstance(result, wl.Refused):
            return [self._accept_refused(env, cmd, result, now)]
        offer = result.offer
        day = self.p._day(cfg, local_date(offer.start, cfg.timezone))
        entry = state.entries[offer.entry_id]
        request = decisions.BookRequest(
            booking_id=cmd.booking_id, customer_ref=cmd.customer_ref, exam_type=offer.exam_type,
            start=offer.start, idempotency_key=cmd.idempotency_key, channel=entry.channel,
            optometrist_id=offer.optometrist_id,
        )  # fmt: skip
        other_holds = [h for h in wl.holds(state.offers.values(), epoch) if h.start != offer.start]
        outcome = wl.book_around_holds(cfg, day, other_holds, request, epoch)
        if isinstance(outcome, decisions.Rejected):
            # The roster moved under the offer (e.g. the optometrist's shift was cancelled).
            rejected = BookingRejected(
                booking_id=cmd.booking_id, idempotency_key=cmd.idempotency_key,
                reason=RejectionReason(outcome.reason.value), detail=outcome.detail,
                slot_start=_utc(offer.start),
                alternatives=[_utc(a) for a in outcome.alternatives],
            )  # fmt: skip
            return [self.p._derive(env, rejected, now)]
        booking = outcome.booking
        self.p._save_booking(booking)
        self.p._save_day(cfg.store_id, day)
        given_up = wl.settle(state, result)
        out = [self._confirmed(env, cfg, cmd, entry, booking, now)]
        out += self._filled_facts(env, cfg, entry, booking, now)
        out += [self._taken(env, cfg, day, state, o, booking.booking_id, now) for o in result.taken]
        left = WaitlistLeft(waitlist_entry_id=entry.entry_id, reason="filled")
        out.append(self.p._derive(env, left, now))
        out += self._declined(env, cfg, state, given_up, now)
        self.save(cfg, state, epoch)
        return [*out, *self.p._view(env, cfg, day, now)]

    def _accept_refused(
        self, env: Envelope[Any], cmd: AcceptOffer, refused: wl.Refused, now: dt.datetime
    ) -> Envelope[Any]:
        duplicate = refused.reason == wl.WaitlistReason.DUPLICATE
        rejected = BookingRejected(
            booking_id=cmd.booking_id,
            idempotency_key=cmd.idempotency_key,
            reason=RejectionReason(refused.reason.value),
            detail=refused.detail,
            slot_start=_utc(refused.offer.start) if refused.offer else None,
            # Only the customer's own booking is named (a taken slot's winner is not theirs).
            existing_booking_id=refused.booking_id if duplicate else None,
        )
        return self.p._derive(env, rejected, now)

    def _confirmed(
        self,
        env: Envelope[Any],
        cfg: StoreConfig,
        cmd: AcceptOffer,
        entry: wl.WaitlistEntry,
        booking: Any,
        now: dt.datetime,
    ) -> Envelope[Any]:
        confirmed = BookingConfirmed(
            booking_id=booking.booking_id,
            idempotency_key=cmd.idempotency_key,
            customer=cmd.customer or Customer(customer_ref=cmd.customer_ref, locale=cfg.locale),
            channel=entry.channel,
            exam_type=booking.exam_type,
            optometrist_id=booking.optometrist_id,
            slot_start=_utc(booking.start),
            slot_end=_utc(booking.end),
            local_start=local_iso(_utc(booking.start), cfg.timezone),
            timezone=cfg.timezone,
            waitlist_entry_id=entry.entry_id,
            offer_token=cmd.offer_token,
        )
        return self.p._derive(env, confirmed, now)

    def _filled_facts(
        self,
        env: Envelope[Any],
        cfg: StoreConfig,
        entry: wl.WaitlistEntry,
        booking: Any,
        now: dt.datetime,
    ) -> list[Envelope[Any]]:
        lead = (booking.start - _epoch(now)) // 60
        kinds = (FactKind.REQUESTED, FactKind.CONFIRMED, FactKind.WAITLIST_FILLED)
        return [
            self.p._fact(env, cfg, k, booking.exam_type, entry.channel, now, lead_minutes=lead)
            for k in kinds
        ]

    def _taken(
        self,
        env: Envelope[Any],
        cfg: StoreConfig,
        day: Day,
        state: wl.WaitlistState,
        offer: wl.Offer,
        booking_id: str,
        now: dt.datetime,
    ) -> Envelope[Any]:
        exam = cfg.exam_types[offer.exam_type]
        # Alternatives only among what this customer could book: not slots held for others.
        epoch = _epoch(now)
        bookable = wl.with_holds(
            day, wl.holds(state.offers.values(), epoch), offer.customer_ref, epoch
        )
        nearby = decisions.alternatives(cfg, bookable, exam, offer.start, not_before=epoch)
        taken = OfferTaken(
            offer_token=offer.token,
            waitlist_entry_id=offer.entry_id,
            booking_id=booking_id,
            customer_ref=offer.customer_ref,
            alternatives=[_utc(a) for a in nearby[:3]],
        )
        return self.p._derive(env, taken, now, offer.token)

    def _declined(
        self,
        env: Envelope[Any],
        cfg: StoreConfig,
        state: wl.WaitlistState,
        declined: Iterable[wl.Offer],
        now: dt.datetime,
    ) -> list[Envelope[Any]]:
        """OfferDeclined for each given-up offer, then each slot goes to the next candidates."""
        out: list[Envelope[Any]] = []
        slots = set()
        for offer in declined:
            event = OfferDeclined(
                offer_token=offer.token, waitlist_entry_id=offer.entry_id,
                customer_ref=offer.customer_ref, slot_start=_utc(offer.start),
            )  # fmt: skip
            out.append(self.p._derive(env, event, now, offer.token))
            slots.add(offer.slot)
        for slot in sorted(slots):
            out += self._cascade(env, cfg, state, slot, now)
        return out

    def _cascade(
        self,
        env: Envelope[Any] | None,
        cfg: StoreConfig,
        state: wl.WaitlistState,
        slot: wl.SlotKey,
        now: dt.datetime,
    ) -> list[Envelope[Any]]:
        day = self.p._day(cfg, local_date(slot.start, cfg.timezone))
        k = self._offers_per_slot(cfg.store_id)
        result = wl.cascade(cfg, day, state, slot, _epoch(now), k, self.hold_s)
        state.apply(result.offers)
        out = self._offered(env, cfg, state, result.offers, now)
        if result.released or result.offers:
            out += self._hold_changed(env, cfg, day, now)
        return out

    # ----------------------------------------------------------------------- slots taken

    def taken_by(
        self, env: Envelope[Any], cfg: StoreConfig, day: Day, booking: Booking, now: dt.datetime
    ) -> TakenBy:
        """Live offers whose held slot `booking` now occupies: an offered customer booked or
        moved into it directly, or a roster change re-homed a booking there. The booking's
        own customer's offer counts as accepted by it (their entry is filled); the others are
        taken, so nobody accepts into a slot that is gone."""
        epoch = _epoch(now)
        record = self._record(cfg.store_id)
        if record is None or record["held_until"] is None or record["held_until"] <= epoch:
            return TakenBy()
        state = self.state(cfg.store_id)
        hit = sorted(
            (o for o in state.offers.values() if o.live_at(epoch) and _occupies(booking, o)),
            key=lambda o: o.token,
        )
        if not hit:
            return TakenBy()
        own = next((o for o in hit if o.customer_ref == booking.customer_ref), None)
        accepted = (
            replace(own, state=wl.OfferState.ACCEPTED, booking_id=booking.booking_id)
            if own
            else None
        )
        taken = tuple(replace(o, state=wl.OfferState.TAKEN) for o in hit if o is not own)
        given_up = wl.settle(state, wl.Won(accepted, taken)) if accepted else []
        state.apply(taken)
        out = [self._taken(env, cfg, day, state, o, booking.booking_id, now) for o in taken]
        if accepted is not None:
            left = WaitlistLeft(waitlist_entry_id=accepted.entry_id, reason="filled")
            out.append(self.p._derive(env, left, now))
            out += self._declined(env, cfg, state, given_up, now)
        self.save(cfg, state, epoch)
        return TakenBy(accepted, out)

    def reseat(
        self, env: Envelope[Any], cfg: StoreConfig, day: Day, now: dt.datetime
    ) -> list[Envelope[Any]]:
        """After a roster change on `day`: live offers whose optometrist can no longer see the
        exam move to another free one (the hold moves; the offer's token stays), else they
        are withdrawn (OfferExpired), without counting as offered to those customers."""
        epoch = _epoch(now)
        record = self._record(cfg.store_id)
        if record is None or record["held_until"] is None or record["held_until"] <= epoch:
            return []
        state = self.state(cfg.store_id)
        result = wl.reseat(cfg, day, state, epoch)
        if not result.moved and not result.withdrawn:
            return []
        state.apply([*result.moved, *result.withdrawn])
        self.save(cfg, state, epoch)
        return [self._expired(env, cfg, offer, now) for offer in result.withdrawn]

    def _expired(
        self, env: Envelope[Any] | None, cfg: StoreConfig, offer: wl.Offer, now: dt.datetime
    ) -> Envelope[Any]:
        event = OfferExpired(
            offer_token=offer.token, waitlist_entry_id=offer.entry_id,
            slot_start=_utc(offer.start), customer_ref=offer.customer_ref,
        )  # fmt: skip
        return self._emit(env, cfg, event, now, offer.token)

    # ----------------------------------------------------------------------- capacity

    def freed(
        self,
        env: Envelope[Any],
        cfg: StoreConfig,
        day: Day,
        start: int,
        optometrist: str | None,
        now: dt.datetime,
    ) -> list[Envelope[Any]]:
        """Offer capacity that became free at `start` (a cancellation, a reschedule away)."""
        record = self._record(cfg.store_id)
        if record is None or record["next_due"] is None:
            return []  # nobody waiting at this store
        state, epoch = self.state(cfg.store_id), _epoch(now)
        k = self._offers_per_slot(cfg.store_id)
        offers = wl.offer_freed_slot(cfg, day, state, start, epoch, k, self.hold_s, optometrist)
        if not offers:
            return []
        state.apply(offers)
        self.save(cfg, state, epoch)
        return self._offered(env, cfg, state, offers, now)

    def new_capacity(
        self,
        env: Envelope[Any],
        cfg: StoreConfig,
        day: Day,
        optometrist: str | None,
        now: dt.datetime,
        served: set[str] | None = None,
    ) -> list[Envelope[Any]]:
        """A roster change that may have added capacity (a new or extended shift, longer
        hours, a new exam type or skill): offer the day's free starts to waiting entries,
        earliest first, `optometrist`'s first. `served`: entries offered something by this
        change already (on another day), which it does not offer again."""
        record = self._record(cfg.store_id)
        if record is None or record["next_due"] is None:
            return []
        state, epoch = self.state(cfg.store_id), _epoch(now)
        served = set() if served is None else served
        offered: list[wl.Offer] = []
        room = OFFERS_BUDGET - self._record_bytes(cfg.store_id)
        for start in decisions.grid(cfg, day.date):
            if room <= 0:
                log.warning(
                    "waitlist_offers_paused", store_id=cfg.store_id, shift_day=str(day.date)
                )
                break
            # One offer per entry from one change, not one per free start.
            served.update(o.entry_id for o in offered)
            pending = {
                i: e
                for i, e in state.entries.items()
                if e.status == wl.EntryStatus.WAITING and i not in served
            }
            if not pending:
                break
            offers = wl.offer_freed_slot(
                cfg, day, wl.WaitlistState(pending, state.offers), start, epoch,
                self.k, self.hold_s, optometrist,
            )  # fmt: skip
            state.apply(offers)
            offered += offers
            room -= sum(len(orjson.dumps(wl.offer_to_json(o))) for o in offers)
        served.update(o.entry_id for o in offered)
        if not offered:
            return []
        self.save(cfg, state, epoch)
        return self._offered(env, cfg, state, offered, now)

    def _offered(
        self,
        env: Envelope[Any] | None,
        cfg: StoreConfig,
        state: wl.WaitlistState,
        offers: Iterable[wl.Offer],
        now: dt.datetime,
    ) -> list[Envelope[Any]]:
        out = []
        for offer in offers:
            entry = state.entries[offer.entry_id]
            event = SlotOffered(
                offer_token=offer.token, waitlist_entry_id=offer.entry_id,
                customer_ref=offer.customer_ref, channel=entry.channel,
                exam_type=offer.exam_type, optometrist_id=offer.optometrist_id,
                slot_start=_utc(offer.start),
                local_start=local_iso(_utc(offer.start), cfg.timezone),
                hold_until=_utc(offer.expires_at), rank=offer.rank,
            )  # fmt: skip
            fact = self.p._fact_payload(
                cfg, FactKind.WAITLIST_OFFERED, offer.exam_type, entry.channel, now
            )
            out.append(self._emit(env, cfg, event, now, offer.token))
            out.append(self._emit(env, cfg, fact, now, offer.token, "fact"))
        return out

    # ----------------------------------------------------------------------- time

    def tick(self, now: dt.datetime) -> list[Envelope[Any]]:
        """Lapse due offers (cascading their slots) and expire entries whose window passed,
        for every store of this task with something due. Runs on every batch and, when the
        store is idle, on the stream's punctuation."""
        return [out for store_id in self.due(now) for out in self.tick_store(store_id, now)]

    def due(self, now: dt.datetime) -> list[str]:
        """The stores with an offer to lapse or an entry to expire by `now`."""
        epoch = _epoch(now)
        return [
            store_id
            for store_id, record in self.p.t.waitlist.items()
            if record["next_due"] is not None and record["next_due"] <= epoch
        ]

    def tick_store(self, store_id: str, now: dt.datetime) -> list[Envelope[Any]]:
        cfg = self.p._config(store_id)
        return self._expire(cfg, now) if cfg is not None else []

    def _expire(self, cfg: StoreConfig, now: dt.datetime) -> list[Envelope[Any]]:
        state, epoch = self.state(cfg.store_id), _epoch(now)
        out: list[Envelope[Any]] = []
        k = self._offers_per_slot(cfg.store_id)
        expiry = wl.expire(cfg, state, lambda date: self.p._day(cfg, date), epoch, k, self.hold_s)
        state.apply(expiry.expired)
        out += [self._expired(None, cfg, offer, now) for offer in expiry.expired]
        for result in expiry.cascades:
            state.apply(result.offers)
            out += self._offered(None, cfg, state, result.offers, now)
            day = self.p._day(cfg, local_date(result.slot.start, cfg.timezone))
            out += self._hold_changed(None, cfg, day, now)
        for entry in wl.expire_entries(cfg, state.entries.values(), epoch):
            state.apply(entries=[entry])
            left = WaitlistLeft(waitlist_entry_id=entry.entry_id, reason="expired")
            out.append(self._emit(None, cfg, left, now, entry.entry_id))
        self.save(cfg, state, epoch)
        return out

    def _hold_changed(
        self, env: Envelope[Any] | None, cfg: StoreConfig, day: Day, now: dt.datetime
    ) -> list[Envelope[Any]]:
        """A hold placed or lapsed changes what the day's availability view shows."""
        day.seq += 1
        self.p._save_day(cfg.store_id, day)
        return self.p._view(env or self._timer(cfg, now, day.date.isoformat()), cfg, day, now)

    # ----------------------------------------------------------------------- outputs

    def _timer(self, cfg: StoreConfig, now: dt.datetime, *salt: str) -> Envelope[Any]:
        """The parent of time-driven events: a deterministic id per store, moment and cause."""
        tick = WaitlistLeft(waitlist_entry_id="timer", reason="expired")
        return new_envelope(
            tick,
            region=cfg.region or self.p.region,
            store_id=cfg.store_id,
            correlation_id=f"timer:{cfg.store_id}:{_epoch(now)}",
            occurred_at=now,
            event_id=deterministic_event_id("timer", cfg.store_id, str(_epoch(now)), *salt),
        )

    def _emit(
        self,
        env: Envelope[Any] | None,
        cfg: StoreConfig,
        payload: EventPayload,
        now: dt.datetime,
        *salt: str,
    ) -> Envelope[Any]:
        parent = env or self._timer(cfg, now, *salt)
        return self.p._derive(parent, payload, now, *salt)


def with_offers_hidden(day: Day, holds: list[wl.Hold], now: int) -> Day:
    """The day as the public availability view shows it: held slots are not free."""
    return wl.with_holds(day, holds, customer_ref="", now=now) if holds else day
