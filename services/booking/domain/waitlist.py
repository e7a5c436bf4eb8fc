"""Waitlist and slot offers, as pure decisions of the availability processor.

When capacity frees, matching waitlist entries are ranked and the slot is offered to the top K
with a hold: until it lapses only those customers can take it, and the first accept wins.
Offers that expire or are declined cascade to the next candidates; when nobody is left the slot
returns to general availability. Everything here is a function of the store's state and `now`
(UTC epoch seconds), so a replay decides exactly the same offers with the same tokens.

Names follow schemas/events/booking.py: JoinWaitlist/WaitlistJoined (entry), SlotOffered
(offer_token, hold_until, rank), AcceptOffer/DeclineOffer, OfferTaken/OfferExpired/OfferDeclined.
Functions never mutate their inputs: they return the changed records and the caller stores them
(`WaitlistState.apply`), like the processor stores a changed `Day`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from services.booking.domain import decisions
from services.booking.domain.calendar import local_date, local_interval, to_local
from services.booking.domain.model import Busy, Day, ExamSpec, Reason, StoreConfig

DEFAULT_OFFERS = 3
DEFAULT_HOLD_S = 600
# A hold never runs past the slot's start (the slot cannot be booked from then on), and an
# offer needs time to reach the customer and be answered: with less than this left before the
# start, holding the slot would only keep it from walk-ins, so it goes back to everyone.
MIN_HOLD_S = 120
# A store's waitlist is one record of the processor's state, which the broker caps at about
# 1 MB: a typical waiting entry is 300 bytes (at most 750), and offers need room too.
DEFAULT_MAX_WAITING = 1000
DEFAULT_MAX_WAITING_PER_CUSTOMER = 10
_TOKEN_NAMESPACE = uuid.UUID("6f0b7d1e-3c57-4a53-9a55-0ee7a1b2c3d4")
HOLD_BOOKING_PREFIX = "hold:"


class EntryStatus(StrEnum):
    WAITING = "waiting"
    FILLED = "filled"
    LEFT = "left"
    EXPIRED = "expired"


class OfferState(StrEnum):
    LIVE = "live"
    ACCEPTED = "accepted"
    EXPIRED = "expired"
    DECLINED = "declined"
    TAKEN = "taken"  # another customer accepted the same slot first
    WITHDRAWN = "withdrawn"  # a roster change left nobody to see the exam at that time


class WaitlistReason(StrEnum):
    """Refusal codes; the values are RejectionReason values of schemas/events/base.py."""

    UNKNOWN_OFFER = "unknown_offer"
    OFFER_EXPIRED = "offer_expired"
    OFFER_TAKEN = "offer_taken"
    HELD = "held"
    DUPLICATE = "duplicate"
    INVALID_TRANSITION = "invalid_transition"


@dataclass(frozen=True)
class WaitlistEntry:
    """A customer waiting for an exam at one store. `windows` are store-local ("HH:MM",
    "HH:MM") times of day; empty means any time. Higher `priority` ranks first, then the
    earlier `joined_at` (the store's join order: see `join_order`)."""

    entry_id: str
    customer_ref: str
    exam_type: str
    first_date: dt.date
    last_date: dt.date
    windows: tuple[tuple[str, str], ...] = ()
    optometrist_id: str | None = None
    joined_at: int = 0
    priority: int = 0
    status: EntryStatus = EntryStatus.WAITING
    channel: str = ""


@dataclass(frozen=True)
class Offer:
    """A slot [start, end) with `optometrist_id` offered to one entry until `expires_at`
    (SlotOffered.hold_until). `round` counts offer waves for the slot; `rank` is 1-based."""

    token: str
    entry_id: str
    customer_ref: str
    store_id: str
    exam_type: str
    optometrist_id: str
    start: int
    end: int
    expires_at: int
    round: int = 1
    rank: int = 1
    state: OfferState = OfferState.LIVE
    booking_id: str | None = None  # for an accepted offer: the booking it became

    @property
    def slot(self) -> SlotKey:
        return SlotKey(self.optometrist_id, self.start)

    def live_at(self, now: int) -> bool:
        return self.state == OfferState.LIVE and now < self.expires_at


@dataclass(frozen=True, order=True)
class SlotKey:
    """A held slot: one optometrist from one start. All offers of a slot compete for it."""

    optometrist_id: str
    start: int


@dataclass(frozen=True)
class Hold:
    """What a slot's live offers keep from everyone else: [start, end) of one optometrist until
    `expires_at`, except for the offered customers."""

    optometrist_id: str
    start: int
    end: int
    expires_at: int
    customers: frozenset[str]


@dataclass
class WaitlistState:
    """One store's waitlist entries and offers (by token)."""

    entries: dict[str, WaitlistEntry] = field(default_factory=dict)
    offers: dict[str, Offer] = field(default_factory=dict)

    def apply(self, offers: Iterable[Offer] = (), entries: Iterable[WaitlistEntry] = ()) -> None:
        for offer in offers:
            self.offers[offer.token] = offer
        for entry in entries:
            self.entries[entry.entry_id] = entry


def join_order(state: WaitlistState, now: int) -> int:
    """`joined_at` for a new entry: `now` unless that would tie with (or precede) the last
    join, so two joins decided in the same second still rank in the order they were made."""
    last = max((e.joined_at for e in state.entries.values()), default=now - 1)
    return max(now, last + 1)


@dataclass(frozen=True)
class WaitlistLimits:
    """How many entries may wait at once at one store, and how many of them one customer's."""

    per_store: int = DEFAULT_MAX_WAITING
    per_customer: int = DEFAULT_MAX_WAITING_PER_CUSTOMER


DEFAULT_LIMITS = WaitlistLimits()


def over_limits(state: WaitlistState, customer_ref: str, limits: WaitlistLimits) -> str | None:
    """Why a new entry for `customer_ref` would exceed the limits (refuse it `waitlist_full`),
    or None."""
    waiting = [e for e in state.entries.values() if e.status == EntryStatus.WAITING]
    if len(waiting) >= limits.per_store:
        return f"the store's waitlist is full ({limits.per_store} entries waiting)"
    if sum(e.customer_ref == customer_ref for e in waiting) >= limits.per_customer:
        return f"this customer already has {limits.per_customer} waiting entries at this store"
    return None


def windows_of(time_from: str | None, time_to: str | None) -> tuple[tuple[str, str], ...]:
    """JoinWaitlist's optional time_from/time_to as entry windows (an open end is the day's)."""
    if time_from is None and time_to is None:
        return ()
    return ((time_from or "00:00", time_to or "24:00"),)


# --------------------------------------------------------------------------- matching


def _exam(cfg: StoreConfig, code: str) -> ExamSpec | None:
    spec = cfg.exam_types.get(code)
    return spec if spec is not None and spec.active else None


def _in_windows(cfg: StoreConfig, entry: WaitlistEntry, start: int, end: int) -> bool:
    if not entry.windows:
        return True
    date = local_date(start, cfg.timezone)
    for time_from, time_to in entry.windows:
        window = local_interval(date, time_from, time_to, cfg.timezone)
        if window is not None and window[0] <= start and end <= window[1]:
            return True
    return False


def matches(cfg: StoreConfig, entry: WaitlistEntry, start: int, end: int, optometrist: str) -> bool:
    """Whether the entry's exam, starting at `start` with `optometrist`, fits inside the freed
    interval [start, end) and the entry's dates, local time windows and optometrist wish."""
    exam = _exam(cfg, entry.exam_type)
    if exam is None or entry.status != EntryStatus.WAITING:
        return False
    exam_end = start + exam.duration_minutes * 60
    if exam_end > end or exam.required_skill not in cfg.optometrists.get(optometrist, ()):
        return False
    if entry.optometrist_id is not None and entry.optometrist_id != optometrist:
        return False
    if not entry.first_date <= local_date(start, cfg.timezone) <= entry.last_date:
        return False
    return _in_windows(cfg, entry, start, exam_end)


def entry_expires_at(cfg: StoreConfig, entry: WaitlistEntry) -> int:
    """When the entry's last acceptable moment has passed: end of its last local window on
    `last_date` (or the local midnight after it when any time of day is fine)."""
    ends = [
        interval[1]
        for time_from, time_to in entry.windows
        if (interval := local_interval(entry.last_date, time_from, time_to, cfg.timezone))
    ]
    if ends:
        return max(ends)
    next_day = local_interval(
        entry.last_date + dt.timedelta(days=1), "00:00", "23:59", cfg.timezone
    )
    assert next_day is not None  # a local day always has a first valid minute
    return next_day[0]


def expire_entries(
    cfg: StoreConfig, entries: Iterable[WaitlistEntry], now: int
) -> list[WaitlistEntry]:
    """Waiting entries whose window has passed, marked EXPIRED (WaitlistLeft reason=expired)."""
    return [
        replace(e, status=EntryStatus.EXPIRED)
        for e in entries
        if e.status == EntryStatus.WAITING and entry_expires_at(cfg, e) <= now
    ]


# --------------------------------------------------------------------------- ranking


def rank_key(entry: WaitlistEntry) -> tuple[int, int, str]:
    return (-entry.priority, entry.joined_at, entry.entry_id)


def _overlaps(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    return a_start < b_end and b_start < a_end


def has_overlapping_offer(
    offers: Iterable[Offer], customer_ref: str, start: int, end: int, now: int
) -> bool:
    return any(
        o.customer_ref == customer_ref and o.live_at(now) and _overlaps(o.start, o.end, start, end)
        for o in offers
    )


def rank(
    entries: Iterable[WaitlistEntry],
    offers: Iterable[Offer],
    start: int,
    end: int,
    now: int,
    expires_at: Callable[[WaitlistEntry], int] | None = None,
) -> list[WaitlistEntry]:
    """Waiting entries in offer order (priority, then join time, then id), without expired
    entries and customers who already hold a live offer overlapping [start, end). All of a
    customer's entries stay: a later one may fit where the first does not, so the caller keeps
    one offer per customer among those that fit (see `_pick`)."""
    live = [o for o in offers if o.live_at(now)]
    return [
        entry
        for entry in sorted(entries, key=rank_key)
        if entry.status == EntryStatus.WAITING
        and (expires_at is None or expires_at(entry) > now)
        and not has_overlapping_offer(live, entry.customer_ref, start, end, now)
    ]


# --------------------------------------------------------------------------- holds


def holds(offers: Iterable[Offer], now: int) -> list[Hold]:
    """The live holds: one per slot, covering its longest offered exam until its last expiry."""
    by_slot: dict[SlotKey, list[Offer]] = {}
    for offer in offers:
        if offer.live_at(now):
            by_slot.setdefault(offer.slot, []).append(offer)
    return [
        Hold(
            optometrist_id=slot.optometrist_id,
            start=slot.start,
            end=max(o.end for o in group),
            expires_at=max(o.expires_at for o in group),
            customers=frozenset(o.customer_ref for o in group),
        )
        for slot, group in sorted(by_slot.items())
    ]


def held_against(
    holds_: Iterable[Hold],
    start: int,
    end: int,
    optometrist: str | None,
    customer_ref: str,
    now: int,
) -> Hold | None:
    """The live hold a booking attempt for [start, end) would break, if any (refuse it with
    `held`). With `optometrist=None` any overlapping hold counts: use `with_holds` to let the
    decision pick another free optometrist first, and this to explain a refusal."""
    for hold in holds_:
        if now >= hold.expires_at or customer_ref in hold.customers:
            continue
        if optometrist is not None and optometrist != hold.optometrist_id:
            continue
        if _overlaps(hold.start, hold.end, start, end):
            return hold
    return None


def with_holds(day: Day, holds_: Iterable[Hold], customer_ref: str, now: int) -> Day:
    """A copy of `day` where the holds this customer is not part of are busy, so the ordinary
    booking decision cannot hand a held slot to someone outside the offer."""
    return decisions.with_busy(day, held_intervals(holds_, customer_ref, now))


def held_intervals(holds_: Iterable[Hold], customer_ref: str, now: int) -> list[tuple[str, Busy]]:
    """(optometrist, interval) of each live hold this customer is not part of."""
    return [
        (h.optometrist_id, Busy(h.start, h.end, f"{HOLD_BOOKING_PREFIX}{h.start}", "", ""))
        for h in holds_
        if now < h.expires_at and customer_ref not in h.customers
    ]


def book_around_holds(
    cfg: StoreConfig, day: Day, holds_: list[Hold], req: decisions.BookRequest, now: int
) -> decisions.Accepted | decisions.Rejected:
    """The ordinary booking decision, except that held slots are only for their offered
    customers: accepted bookings occupy `day`; a refusal caused by a hold says `held`."""
    blocked = with_holds(day, holds_, req.customer_ref, now)
    outcome = decisions.decide_booking(cfg, blocked, req, now)
    if blocked is day:
        return outcome
    if isinstance(outcome, decisions.Accepted):
        b = outcome.booking
        day.occupy(
            b.optometrist_id, Busy(b.start, b.end, b.booking_id, b.customer_ref, b.exam_type)
        )
        day.seq += 1
        return outcome
    exam = _exam(cfg, req.exam_type)
    if outcome.reason != Reason.SLOT_TAKEN or exam is None:
        return outcome
    end = req.start + exam.duration_minutes * 60
    hold = held_against(holds_, req.start, end, req.optometrist_id, req.customer_ref, now)
    free_without_holds = decisions.candidates(cfg, day, exam, req.start, req.optometrist_id)
    if hold is None or not isinstance(free_without_holds, list) or not free_without_holds:
        return outcome
    detail = (
        "held for a waitlist offer until " + to_local(hold.expires_at, cfg.timezone).isoformat()
    )
    return replace(outcome, reason=Reason.HELD, detail=detail)


# --------------------------------------------------------------------------- offering


def offer_token(entry_id: str, start: int, round_: int) -> str:
    """Deterministic, so a replayed decision yields the same token."""
    return str(uuid.uuid5(_TOKEN_NAMESPACE, f"{entry_id}|{start}|{round_}"))


def _tried(offers: Iterable[Offer], start: int) -> set[str]:
    """Entries already offered this start that must not get it again: still live, or they let
    it expire or declined. Losers of a race (TAKEN) and offers the roster withdrew may be
    offered it if it frees again."""
    spent = {OfferState.LIVE, OfferState.EXPIRED, OfferState.DECLINED, OfferState.ACCEPTED}
    return {o.entry_id for o in offers if o.start == start and o.state in spent}


def _next_round(offers: Iterable[Offer], start: int) -> int:
    return 1 + max((o.round for o in offers if o.start == start), default=0)


def _free_for(
    cfg: StoreConfig, day: Day, exam: ExamSpec, entry: WaitlistEntry, start: int
) -> list[str]:
    who = decisions.candidates(cfg, day, exam, start, entry.optometrist_id)
    return who if isinstance(who, list) else []


def offer_freed_slot(
    cfg: StoreConfig,
    day: Day,
    state: WaitlistState,
    freed_start: int,
    now: int,
    k: int = DEFAULT_OFFERS,
    hold_s: int = DEFAULT_HOLD_S,
    optometrist: str | None = None,
) -> list[Offer]:
    """Offers for capacity that became free at `freed_start` (call after the change is applied
    to `day`). The top-ranked matching entry picks the optometrist (its wish, else
    `optometrist` if free, else the least loaded free one); the next entries that fit the same
    optometrist and start fill up to `k` live offers. A slot that still has live offers (a
    cascade after a decline) keeps its optometrist and only tops up. Each hold ends by the
    slot's start. Empty when nobody matches or less than `MIN_HOLD_S` is left before the start:
    the slot stays generally available."""
    if freed_start - now < MIN_HOLD_S:
        return []
    offers = list(state.offers.values())
    current = _live_offers_at(offers, freed_start, optometrist, now)
    chosen = current[0].optometrist_id if current else None
    others = [
        h for h in holds(offers, now) if SlotKey(h.optometrist_id, h.start) != _slot_of(current)
    ]
    blocked = with_holds(day, others, customer_ref="", now=now)
    picked = _pick(
        cfg, blocked, state, offers, freed_start, now, k - len(current), chosen, optometrist
    )
    if not picked:
        return []
    who, entries = picked
    expires_at = min(now + hold_s, freed_start)
    return _make_offers(
        cfg, entries, who, freed_start, expires_at, _next_round(offers, freed_start),
        first_rank=_last_rank(offers, freed_start) + 1,
    )  # fmt: skip


def _live_offers_at(
    offers: Iterable[Offer], start: int, optometrist: str | None, now: int
) -> list[Offer]:
    """The live offers already holding this start (for `optometrist`, when given)."""
    return [
        o
        for o in offers
        if o.live_at(now) and o.start == start and optometrist in (None, o.optometrist_id)
    ]


def _slot_of(offers: list[Offer]) -> SlotKey | None:
    return offers[0].slot if offers else None


def _pick(
    cfg: StoreConfig,
    day: Day,
    state: WaitlistState,
    offers: list[Offer],
    start: int,
    now: int,
    wanted: int,
    chosen: str | None,
    preferred: str | None,
) -> tuple[str, list[tuple[WaitlistEntry, int]]] | None:
    """The optometrist the slot is held for and the entries (with their exam end) to offer:
    one per customer, their best-ranked entry that fits."""
    tried = _tried(offers, start)
    waiting = [e for e in state.entries.values() if e.entry_id not in tried]
    picked: list[tuple[WaitlistEntry, int]] = []
    offered_to: set[str] = set()
    for entry in rank(waiting, offers, start, start + 1, now, _expiry(cfg)):
        if len(picked) >= wanted:
            break
        if entry.customer_ref in offered_to:
            continue
        exam = _exam(cfg, entry.exam_type)
        if exam is None or decisions.check_slot(cfg, exam.code, start, now) is not None:
            continue
        end = start + exam.duration_minutes * 60
        free = _free_for(cfg, day, exam, entry, start)
        who = chosen or (preferred if preferred in free else (free[0] if free else None))
        if who is None or who not in free or not matches(cfg, entry, start, end, who):
            continue
        if has_overlapping_offer(offers, entry.customer_ref, start, end, now):
            continue
        chosen = who
        picked.append((entry, end))
        offered_to.add(entry.customer_ref)
    return (chosen, picked) if chosen is not None and picked else None


def _last_rank(offers: Iterable[Offer], start: int) -> int:
    unranked = {OfferState.TAKEN, OfferState.WITHDRAWN}
    return max((o.rank for o in offers if o.start == start and o.state not in unranked), default=0)


def _expiry(cfg: StoreConfig) -> Callable[[WaitlistEntry], int]:
    return lambda entry: entry_expires_at(cfg, entry)


def _make_offers(
    cfg: StoreConfig,
    picked: list[tuple[WaitlistEntry, int]],
    optometrist: str,
    start: int,
    expires_at: int,
    round_: int,
    first_rank: int,
) -> list[Offer]:
    return [
        Offer(
            token=offer_token(entry.entry_id, start, round_),
            entry_id=entry.entry_id,
            customer_ref=entry.customer_ref,
            store_id=cfg.store_id,
            exam_type=entry.exam_type,
            optometrist_id=optometrist,
            start=start,
            end=end,
            expires_at=expires_at,
            round=round_,
            rank=position,
        )
        for position, (entry, end) in enumerate(picked, start=first_rank)
    ]


@dataclass(frozen=True)
class Cascade:
    """Follow-up of a slot whose offers lapsed or were declined: new offers, or (when nobody
    is left and nothing is live) `released`, i.e. back to general availability."""

    slot: SlotKey
    offers: tuple[Offer, ...]
    released: bool


def cascade(
    cfg: StoreConfig,
    day: Day,
    state: WaitlistState,
    slot: SlotKey,
    now: int,
    k: int = DEFAULT_OFFERS,
    hold_s: int = DEFAULT_HOLD_S,
) -> Cascade:
    """Offer `slot` to the next candidates (call after the lapsed/declined offers are stored)."""
    still_held = any(o.live_at(now) and o.slot == slot for o in state.offers.values())
    offers = offer_freed_slot(cfg, day, state, slot.start, now, k, hold_s, slot.optometrist_id)
    return Cascade(slot, tuple(offers), released=not offers and not still_held)


# --------------------------------------------------------------------------- accept / decline


@dataclass(frozen=True)
class Won:
    """The first accept of a live offer: book `offer` (its optometrist, start, exam) for its
    entry; `taken` are the competing offers of the same slot, now TAKEN (send OfferTaken)."""

    offer: Offer
    taken: tuple[Offer, ...]

    @property
    def changes(self) -> tuple[Offer, ...]:
        return (self.offer, *self.taken)


@dataclass(frozen=True)
class Refused:
    reason: WaitlistReason
    detail: str
    offer: Offer | None = None
    booking_id: str | None = None  # the booking that won the slot (or this token's booking)


def _own_offer(offers: Mapping[str, Offer], token: str, customer_ref: str) -> Offer | Refused:
    offer = offers.get(token)
    # Someone else's token is refused like an unknown one: it must not reveal offers.
    if offer is None or offer.customer_ref != customer_ref:
        return Refused(WaitlistReason.UNKNOWN_OFFER, "no such offer for this customer")
    return offer


def _winner(offers: Mapping[str, Offer], slot: SlotKey) -> Offer | None:
    return next(
        (o for o in offers.values() if o.slot == slot and o.state == OfferState.ACCEPTED), None
    )


def _not_live(offers: Mapping[str, Offer], offer: Offer, now: int) -> Refused | None:
    if offer.state == OfferState.ACCEPTED:
        return Refused(WaitlistReason.DUPLICATE, "offer already accepted", offer, offer.booking_id)
    if offer.state == OfferState.TAKEN:
        winner = _winner(offers, offer.slot)
        booking = winner.booking_id if winner else None
        return Refused(WaitlistReason.OFFER_TAKEN, "someone else took the slot", offer, booking)
    if offer.state == OfferState.DECLINED:
        return Refused(WaitlistReason.INVALID_TRANSITION, "the offer was declined", offer)
    if offer.state == OfferState.WITHDRAWN:
        detail = "the roster changed: nobody can see this exam at that time any more"
        return Refused(WaitlistReason.OFFER_EXPIRED, detail, offer)
    if offer.state == OfferState.EXPIRED or now >= offer.expires_at:
        return Refused(WaitlistReason.OFFER_EXPIRED, "the offer's hold has lapsed", offer)
    return None


def accept(
    offers: Mapping[str, Offer], token: str, customer_ref: str, booking_id: str, now: int
) -> Won | Refused:
    """AcceptOffer: the first accept of a live offer wins the slot; later ones are refused
    with `offer_taken`, lapsed ones with `offer_expired`, unknown tokens with `unknown_offer`."""
    offer = _own_offer(offers, token, customer_ref)
    if isinstance(offer, Refused):
        return offer
    refused = _not_live(offers, offer, now)
    if refused is not None:
        return refused
    won = replace(offer, state=OfferState.ACCEPTED, booking_id=booking_id)
    taken = tuple(
        replace(o, state=OfferState.TAKEN)
        for o in sorted(offers.values(), key=lambda o: o.token)
        if o.slot == offer.slot and o.token != token and o.state == OfferState.LIVE
    )
    return Won(won, taken)


def decline(
    offers: Mapping[str, Offer], token: str, customer_ref: str, now: int
) -> Offer | Refused:
    """DeclineOffer: the declined offer (then `cascade` its slot)."""
    offer = _own_offer(offers, token, customer_ref)
    if isinstance(offer, Refused):
        return offer
    refused = _not_live(offers, offer, now)
    return refused or replace(offer, state=OfferState.DECLINED)


def settle(state: WaitlistState, won: Won) -> list[Offer]:
    """Store a win: the offers change, the entry is FILLED, and the entry's other live offers
    are given up (DECLINED) so their slots can `cascade`; those are returned."""
    entry = state.entries.get(won.offer.entry_id)
    given_up = [
        replace(o, state=OfferState.DECLINED)
        for o in sorted(state.offers.values(), key=lambda o: o.token)
        if o.entry_id == won.offer.entry_id and o.state == OfferState.LIVE
        and o.token != won.offer.token
    ]  # fmt: skip
    filled = [replace(entry, status=EntryStatus.FILLED)] if entry is not None else []
    state.apply([*won.changes, *given_up], filled)
    return given_up


def leave(state: WaitlistState, entry_id: str, customer_ref: str) -> list[Offer] | None:
    """LeaveWaitlist: the entry becomes LEFT and its live offers DECLINED (returned, to
    `cascade`); None when the customer has no such waiting entry."""
    entry = state.entries.get(entry_id)
    if entry is None or entry.customer_ref != customer_ref or entry.status != EntryStatus.WAITING:
        return None
    given_up = [
        replace(o, state=OfferState.DECLINED)
        for o in sorted(state.offers.values(), key=lambda o: o.token)
        if o.entry_id == entry_id and o.state == OfferState.LIVE
    ]
    state.apply(given_up, [replace(entry, status=EntryStatus.LEFT)])
    return given_up


# --------------------------------------------------------------------------- roster changes


@dataclass(frozen=True)
class Reseated:
    """Live offers a roster change moved: held with another optometrist at the same start, or
    WITHDRAWN (send OfferExpired) when nobody else can see the exam then."""

    moved: tuple[Offer, ...]
    withdrawn: tuple[Offer, ...]


def reseat(cfg: StoreConfig, day: Day, state: WaitlistState, now: int) -> Reseated:
    """After a roster change on `day` (call once its bookings are re-homed): the live offers
    whose optometrist can no longer see the exam at that time move, slot by slot, to another
    free qualified optometrist, as re-homed bookings do; an entry that asked for that
    optometrist is not moved. Works on a copy: the caller stores both tuples."""
    scratch = WaitlistState(dict(state.entries), dict(state.offers))
    by_slot: dict[SlotKey, list[Offer]] = {}
    for offer in sorted(scratch.offers.values(), key=lambda o: o.token):
        if offer.live_at(now) and local_date(offer.start, cfg.timezone) == day.date:
            by_slot.setdefault(offer.slot, []).append(offer)
    moved: list[Offer] = []
    withdrawn: list[Offer] = []
    for slot, offers in sorted(by_slot.items()):
        if all(_served(cfg, day, slot.optometrist_id, o) for o in offers):
            continue
        who = _reseat_to(cfg, day, scratch, slot, offers, now)
        for offer in offers:
            wish = scratch.entries.get(offer.entry_id)
            if who is None or (wish is not None and wish.optometrist_id not in (None, who)):
                withdrawn.append(replace(offer, state=OfferState.WITHDRAWN))
            else:
                moved.append(replace(offer, optometrist_id=who))
        scratch.apply([*moved, *withdrawn])
    return Reseated(tuple(moved), tuple(withdrawn))


def _served(cfg: StoreConfig, day: Day, optometrist: str, offer: Offer) -> bool:
    return decisions.still_serves(cfg, day, optometrist, offer.exam_type, offer.start, offer.end)


def _reseat_to(
    cfg: StoreConfig,
    day: Day,
    state: WaitlistState,
    slot: SlotKey,
    offers: list[Offer],
    now: int,
) -> str | None:
    """A free optometrist who can see every exam of the slot's offers, outside other holds."""
    others = [
        h for h in holds(state.offers.values(), now) if SlotKey(h.optometrist_id, h.start) != slot
    ]
    free_day = with_holds(day, others, customer_ref="", now=now)
    for who in _free_for_all(cfg, free_day, offers):
        if who != slot.optometrist_id and all(_served(cfg, day, who, o) for o in offers):
            return who
    return None


def _free_for_all(cfg: StoreConfig, day: Day, offers: list[Offer]) -> list[str]:
    pools = []
    for offer in offers:
        exam = cfg.exam_types.get(offer.exam_type)
        who = decisions.candidates(cfg, day, exam, offer.start) if exam is not None else []
        pools.append(who if isinstance(who, list) else [])
    first, *rest = pools
    return [w for w in first if all(w in pool for pool in rest)]


# --------------------------------------------------------------------------- expiry


def lapse(offers: Iterable[Offer], now: int) -> list[Offer]:
    """Live offers whose hold has passed, marked EXPIRED (send OfferExpired)."""
    return [
        replace(o, state=OfferState.EXPIRED)
        for o in sorted(offers, key=lambda o: o.token)
        if o.state == OfferState.LIVE and now >= o.expires_at
    ]


@dataclass(frozen=True)
class Expiry:
    expired: tuple[Offer, ...]
    cascades: tuple[Cascade, ...]

    @property
    def offered(self) -> tuple[Offer, ...]:
        return tuple(o for c in self.cascades for o in c.offers)

    @property
    def released(self) -> tuple[SlotKey, ...]:
        return tuple(c.slot for c in self.cascades if c.released)


def expire(
    cfg: StoreConfig,
    state: WaitlistState,
    day_for: Callable[[dt.date], Day],
    now: int,
    k: int = DEFAULT_OFFERS,
    hold_s: int = DEFAULT_HOLD_S,
) -> Expiry:
    """Lapse due offers and cascade each affected slot. Works on a copy: the caller stores
    `expired` and `offered` (`state.apply(...)`)."""
    expired = lapse(state.offers.values(), now)
    scratch = WaitlistState(dict(state.entries), dict(state.offers))
    scratch.apply(expired)
    cascades = []
    for slot in sorted({o.slot for o in expired}):
        day = day_for(local_date(slot.start, cfg.timezone))
        result = cascade(cfg, day, scratch, slot, now, k, hold_s)
        scratch.apply(result.offers)
        cascades.append(result)
    return Expiry(tuple(expired), tuple(cascades))


# --------------------------------------------------------------------------- JSON


def entry_to_json(e: WaitlistEntry) -> dict[str, Any]:
    return {
        "entry_id": e.entry_id,
        "customer_ref": e.customer_ref,
        "exam_type": e.exam_type,
        "first_date": e.first_date.isoformat(),
        "last_date": e.last_date.isoformat(),
        "windows": [list(w) for w in e.windows],
        "optometrist_id": e.optometrist_id,
        "joined_at": e.joined_at,
        "priority": e.priority,
        "status": e.status.value,
        "channel": e.channel,
    }


def entry_from_json(d: Mapping[str, Any]) -> WaitlistEntry:
    return WaitlistEntry(
        entry_id=d["entry_id"],
        customer_ref=d["customer_ref"],
        exam_type=d["exam_type"],
        first_date=dt.date.fromisoformat(d["first_date"]),
        last_date=dt.date.fromisoformat(d["last_date"]),
        windows=tuple((w[0], w[1]) for w in d.get("windows", ())),
        optometrist_id=d.get("optometrist_id"),
        joined_at=d.get("joined_at", 0),
        priority=d.get("priority", 0),
        status=EntryStatus(d.get("status", EntryStatus.WAITING)),
        channel=d.get("channel", ""),
    )


_OFFER_FIELDS = (
    "token", "entry_id", "customer_ref", "store_id", "exam_type", "optometrist_id",
    "start", "end", "expires_at", "round", "rank", "booking_id",
)  # fmt: skip


def offer_to_json(o: Offer) -> dict[str, Any]:
    return {**{name: getattr(o, name) for name in _OFFER_FIELDS}, "state": o.state.value}


def offer_from_json(d: Mapping[str, Any]) -> Offer:
    values = {name: d[name] for name in _OFFER_FIELDS if name in d}
    return Offer(**values, state=OfferState(d.get("state", OfferState.LIVE)))


def state_to_json(s: WaitlistState) -> dict[str, Any]:
    return {
        "entries": [entry_to_json(e) for _, e in sorted(s.entries.items())],
        "offers": [offer_to_json(o) for _, o in sorted(s.offers.items())],
    }


def state_from_json(d: Mapping[str, Any]) -> WaitlistState:
    entries = (entry_from_json(e) for e in d.get("entries", ()))
    offers = (offer_from_json(o) for o in d.get("offers", ()))
    return WaitlistState(
        entries={e.entry_id: e for e in entries}, offers={o.token: o for o in offers}
    )
