"""The waitlist inside the availability processor (pure: tables are dicts, time is passed in):
freed capacity is offered to the top K entries with a hold, the first accept wins, lapsed and
declined offers cascade, and a held slot is refused to everyone outside the offer."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from schemas.events.availability import StoreDayAvailability
from schemas.events.booking import (
    AcceptOffer,
    BookingCancelled,
    BookingConfirmed,
    BookingDisplaced,
    BookingReassigned,
    BookingRejected,
    BookingRescheduled,
    CancelBooking,
    CommandFailed,
    Customer,
    DeclineOffer,
    JoinWaitlist,
    LeaveWaitlist,
    OfferDeclined,
    OfferExpired,
    OfferTaken,
    RescheduleBooking,
    SlotOffered,
    WaitlistJoined,
    WaitlistLeft,
)
from schemas.events.facts import BookingFact, FactKind
from schemas.events.roster import (
    LeaveGranted,
    OptometristJoined,
    ShiftCancelled,
    ShiftChanged,
    ShiftPublished,
)
from services.booking.adapters import waitlist_desk
from services.booking.adapters.processor import AvailabilityProcessor, ProcessorTables
from services.booking.domain import waitlist as wl

from .storefixture import berlin_store, env, request

DAY = dt.date(2026, 12, 7)
NOW = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
HOLD = dt.timedelta(seconds=600)


def at(hhmm: str) -> dt.datetime:
    h, m = map(int, hhmm.split(":"))
    return dt.datetime(DAY.year, DAY.month, DAY.day, h - 1, m, tzinfo=dt.UTC)  # Berlin UTC+1


def of(outputs: list[Any], cls: type) -> list[Any]:
    return [o.payload for o in outputs if isinstance(o.payload, cls)]


def join(proc: AvailabilityProcessor, n: int, now: dt.datetime, **extra: Any) -> list[Any]:
    cmd = JoinWaitlist(
        idempotency_key=f"join-{n}", waitlist_entry_id=f"w{n}", channel="wechat",
        customer=Customer(customer_ref=f"c{n}", locale="zh-CN"),
        **{"exam_type": "standard", "date_from": DAY, "date_to": DAY, **extra},
    )  # fmt: skip
    return proc.handle(env("berlin", cmd, now), now)


def accept(
    proc: AvailabilityProcessor, token: str, customer: str, key: str, now: dt.datetime
) -> list[Any]:
    cmd = AcceptOffer(
        idempotency_key=key, offer_token=token, customer_ref=customer, booking_id=f"b-{key}"
    )
    return proc.handle(env("berlin", cmd, now), now)


def cancel(proc: AvailabilityProcessor, booking_id: str, now: dt.datetime) -> list[Any]:
    cmd = CancelBooking(
        idempotency_key=f"cancel-{booking_id}", booking_id=booking_id, by="customer"
    )
    return proc.handle(env("berlin", cmd, now), now)


def free_at(outputs: list[Any], hhmm: str) -> bool:
    (view,) = of(outputs, StoreDayAvailability)
    return hhmm in view.exam_types["standard"].free_starts


def full_day_with_five_waiting() -> tuple[AvailabilityProcessor, ProcessorTables]:
    """Both optometrists booked 09:00-09:30 (B only works mornings); 5 customers wait, all
    joining within the same second (their order must still decide who is offered first)."""
    proc, tables = berlin_store()
    for who in ("A", "B"):
        out = proc.handle(request("berlin", at("09:00"), key=f"k{who}", customer=f"x{who}",
                                  optometrist=who, now=NOW), NOW)  # fmt: skip
        assert of(out, BookingConfirmed)
    for n in range(1, 6):
        out = join(proc, n, NOW, time_from="09:00", time_to="09:30")
        assert of(out, WaitlistJoined) and of(out, BookingFact)[0].fact == FactKind.WAITLIST_JOINED
    return proc, tables


def test_a_cancellation_is_offered_to_the_top_three_and_the_first_accept_wins() -> None:
    proc, tables = full_day_with_five_waiting()
    out = cancel(proc, "b-kA", NOW)
    offers = of(out, SlotOffered)
    assert [o.waitlist_entry_id for o in offers] == ["w1", "w2", "w3"]  # join order
    assert {o.slot_start for o in offers} == {at("09:00")}
    assert all(o.hold_until == NOW + HOLD and o.channel == "wechat" for o in offers)
    assert not free_at(out, "09:00")  # held: not offered to the public
    facts = [f.fact for f in of(out, BookingFact)]
    assert facts.count(FactKind.WAITLIST_OFFERED) == 3

    later = NOW + dt.timedelta(seconds=30)
    won = accept(proc, offers[1].offer_token, "c2", "acc-2", later)
    (confirmed,) = of(won, BookingConfirmed)
    assert confirmed.waitlist_entry_id == "w2" and confirmed.slot_start == at("09:00")
    taken = of(won, OfferTaken)
    assert {t.offer_token for t in taken} == {offers[0].offer_token, offers[2].offer_token}
    assert all(t.booking_id == confirmed.booking_id and t.alternatives for t in taken)
    assert of(won, WaitlistLeft)[0].reason == "filled"
    assert FactKind.WAITLIST_FILLED in [f.fact for f in of(won, BookingFact)]

    lost = accept(proc, offers[0].offer_token, "c1", "acc-1", later)
    (rejected,) = of(lost, BookingRejected)
    assert rejected.reason == "offer_taken" and rejected.existing_booking_id is None
    again = accept(proc, offers[1].offer_token, "c2", "acc-2b", later)
    assert of(again, BookingRejected)[0].existing_booking_id == confirmed.booking_id
    confirmed_at_nine = [
        b for b in tables.bookings.values() if b["start"] == int(at("09:00").timestamp())
        and b["status"] == "confirmed"
    ]  # fmt: skip
    assert len(confirmed_at_nine) == 2  # B's booking and the waitlist winner, nothing more


def test_someone_elses_token_is_unknown() -> None:
    proc, _ = full_day_with_five_waiting()
    offers = of(cancel(proc, "b-kA", NOW), SlotOffered)
    out = accept(proc, offers[0].offer_token, "c5", "steal", NOW)
    assert of(out, BookingRejected)[0].reason == "unknown_offer"


def test_a_held_slot_is_refused_to_others_until_the_hold_lapses() -> None:
    proc, _ = full_day_with_five_waiting()
    cancel(proc, "b-kA", NOW)
    outsider = request("berlin", at("09:00"), key="walk-in", customer="zz", now=NOW)
    (rejected,) = of(proc.handle(outsider, NOW), BookingRejected)
    assert rejected.reason == "held" and "held for a waitlist offer" in rejected.detail

    after_first = NOW + HOLD
    lapsed = proc.tick(after_first)
    assert len(of(lapsed, OfferExpired)) == 3
    cascaded = of(lapsed, SlotOffered)
    assert [o.waitlist_entry_id for o in cascaded] == ["w4", "w5"]
    assert of(proc.handle(outsider, after_first), BookingRejected)[0].reason == "held"

    released = proc.tick(after_first + HOLD)
    assert len(of(released, OfferExpired)) == 2 and not of(released, SlotOffered)
    assert free_at(released, "09:00")  # back to general availability
    retry = request("berlin", at("09:00"), key="walk-in-2", customer="zz", now=NOW)
    assert of(proc.handle(retry, after_first + HOLD), BookingConfirmed)


def test_an_accept_after_expiry_is_refused_with_a_clear_reason() -> None:
    proc, _ = full_day_with_five_waiting()
    offers = of(cancel(proc, "b-kA", NOW), SlotOffered)
    proc.tick(NOW + HOLD)
    out = accept(proc, offers[0].offer_token, "c1", "late", NOW + HOLD)
    (rejected,) = of(out, BookingRejected)
    assert rejected.reason == "offer_expired" and "lapsed" in rejected.detail


def test_a_decline_cascades_to_the_next_candidate() -> None:
    proc, _ = full_day_with_five_waiting()
    offers = of(cancel(proc, "b-kA", NOW), SlotOffered)
    cmd = DeclineOffer(idempotency_key="dec", offer_token=offers[0].offer_token, customer_ref="c1")
    out = proc.handle(env("berlin", cmd, NOW), NOW)
    assert of(out, OfferDeclined)[0].offer_token == offers[0].offer_token
    assert [o.waitlist_entry_id for o in of(out, SlotOffered)] == ["w4"]


def test_leaving_gives_up_live_offers_and_nobody_is_offered_twice() -> None:
    proc, _ = full_day_with_five_waiting()
    offers = of(cancel(proc, "b-kA", NOW), SlotOffered)
    cmd = LeaveWaitlist(idempotency_key="leave", waitlist_entry_id="w1", customer_ref="c1")
    out = proc.handle(env("berlin", cmd, NOW), NOW)
    assert of(out, WaitlistLeft)[0].reason == "customer"
    assert of(out, OfferDeclined)[0].offer_token == offers[0].offer_token
    assert [o.waitlist_entry_id for o in of(out, SlotOffered)] == ["w4"]
    out = proc.handle(env("berlin", cmd.model_copy(update={"idempotency_key": "l2"}), NOW), NOW)
    assert of(out, CommandFailed)[0].reason == "invalid_transition"


def test_join_refuses_unknown_exam_types_and_past_days() -> None:
    proc, _ = berlin_store()
    bad = JoinWaitlist(
        idempotency_key="j", waitlist_entry_id="w", channel="web",
        customer=Customer(customer_ref="c"), exam_type="nope", date_from=DAY, date_to=DAY,
    )  # fmt: skip
    assert of(proc.handle(env("berlin", bad, NOW), NOW), CommandFailed)[0].reason == (
        "unknown_exam_type"
    )
    gone = dt.date(2026, 11, 2)
    past = bad.model_copy(
        update={
            "idempotency_key": "j2",
            "exam_type": "standard",
            "date_from": gone,
            "date_to": gone,
        }
    )
    assert of(proc.handle(env("berlin", past, NOW), NOW), CommandFailed)[0].reason == "in_past"


def test_a_new_shift_offers_one_slot_per_waiting_entry() -> None:
    proc, _ = berlin_store()
    next_day = DAY + dt.timedelta(days=1)
    for n in (1, 2):
        join(proc, n, NOW, date_from=next_day, date_to=next_day)
    shift = ShiftPublished(shift_id="A-new", optometrist_id="A", store_id="berlin",
                           date=next_day, start="10:00", end="12:00")  # fmt: skip
    out = proc.handle(env("berlin", shift, NOW), NOW)
    offers = of(out, SlotOffered)
    assert sorted(o.waitlist_entry_id for o in offers) == ["w1", "w2"]
    assert len({o.slot_start for o in offers}) == 1  # both offered the first free start


def test_the_waitlist_table_holds_json_and_expired_entries_leave() -> None:
    proc, tables = full_day_with_five_waiting()
    orjson.dumps(tables.waitlist)  # changelog values must be JSON
    end_of_window = at("09:30")
    out = proc.tick(end_of_window)
    assert sorted(e.waitlist_entry_id for e in of(out, WaitlistLeft)) == [
        f"w{n}" for n in range(1, 6)
    ]
    assert all(e.reason == "expired" for e in of(out, WaitlistLeft))
    assert tables.waitlist["berlin"]["next_due"] is None


def test_a_higher_priority_entry_is_offered_before_earlier_joins() -> None:
    proc, _ = berlin_store()
    for who in ("A", "B"):
        proc.handle(request("berlin", at("09:00"), key=f"k{who}", customer=f"x{who}",
                            optometrist=who, now=NOW), NOW)  # fmt: skip
    join(proc, 1, NOW)
    join(proc, 2, NOW, priority=5)
    cancel_out = cancel(proc, "b-kA", NOW)
    assert [(o.waitlist_entry_id, o.rank) for o in of(cancel_out, SlotOffered)][:2] == [
        ("w2", 1), ("w1", 2),
    ]  # fmt: skip


def test_facts_are_dated_the_local_day_they_happen_not_the_slot_day() -> None:
    proc, _ = berlin_store()
    out = proc.handle(request("berlin", at("10:00"), key="f1", customer="f", now=NOW), NOW)
    facts = of(out, BookingFact)
    assert {f.fact for f in facts} == {FactKind.REQUESTED, FactKind.CONFIRMED}
    assert {f.local_date for f in facts} == {NOW.date()}  # booked on Dec 1 for Dec 7
    assert all(f.lead_minutes == (at("10:00") - NOW).total_seconds() // 60 for f in facts)


def test_an_accept_retried_with_its_key_resolves_to_the_same_booking() -> None:
    proc, _ = full_day_with_five_waiting()
    offers = of(cancel(proc, "b-kA", NOW), SlotOffered)
    (confirmed,) = of(accept(proc, offers[0].offer_token, "c1", "same-key", NOW), BookingConfirmed)
    retry = AcceptOffer(
        idempotency_key="same-key", offer_token=offers[0].offer_token, customer_ref="c1",
        booking_id="b-other",
    )  # fmt: skip
    (again,) = of(proc.handle(env("berlin", retry, NOW), NOW), BookingRejected)
    assert again.reason == "duplicate" and again.existing_booking_id == confirmed.booking_id


def test_a_join_leave_or_decline_retried_with_its_key_names_what_the_first_one_did() -> None:
    proc, _ = full_day_with_five_waiting()
    retry = JoinWaitlist(
        idempotency_key="join-1", waitlist_entry_id="w-fresh", channel="wechat",
        customer=Customer(customer_ref="c1", locale="zh-CN"), exam_type="standard",
        date_from=DAY, date_to=DAY, time_from="09:00", time_to="09:30",
    )  # fmt: skip
    (joined_again,) = of(proc.handle(env("berlin", retry, NOW), NOW), CommandFailed)
    assert (joined_again.reason, joined_again.waitlist_entry_id) == ("duplicate", "w1")
    assert joined_again.decided_event_id is not None
    assert "w-fresh" not in proc.waitlist.state("berlin").entries

    leave = LeaveWaitlist(idempotency_key="leave-2", waitlist_entry_id="w2", customer_ref="c2")
    (left,) = of(proc.handle(env("berlin", leave, NOW), NOW), WaitlistLeft)
    (left_again,) = of(proc.handle(env("berlin", leave, NOW), NOW), CommandFailed)
    assert left_again.reason == "duplicate" and left_again.decided_event_id is not None
    assert left.waitlist_entry_id == "w2"
    assert left_again.waitlist_entry_id is None

    offer = of(cancel(proc, "b-kA", NOW), SlotOffered)[0]
    decline = DeclineOffer(
        idempotency_key="no-thanks", offer_token=offer.offer_token, customer_ref=offer.customer_ref
    )
    assert of(proc.handle(env("berlin", decline, NOW), NOW), OfferDeclined)
    (declined_again,) = of(proc.handle(env("berlin", decline, NOW), NOW), CommandFailed)
    assert declined_again.reason == "duplicate" and declined_again.decided_event_id


def test_joins_past_the_stores_or_the_customers_limit_are_refused_waitlist_full() -> None:
    proc, _ = berlin_store()
    proc.waitlist.limits = wl.WaitlistLimits(per_store=3, per_customer=2)

    def join_as(customer: str, n: int) -> Any:
        cmd = JoinWaitlist(
            idempotency_key=f"j{n}", waitlist_entry_id=f"w{n}", channel="web",
            customer=Customer(customer_ref=customer), exam_type="standard",
            date_from=DAY, date_to=DAY,
        )  # fmt: skip
        return proc.handle(env("berlin", cmd, NOW), NOW)[0].payload

    assert isinstance(join_as("ann", 1), WaitlistJoined)
    assert isinstance(join_as("ann", 2), WaitlistJoined)
    third = join_as("ann", 3)
    assert isinstance(third, CommandFailed) and third.reason == "waitlist_full"
    assert "this customer" in third.detail
    assert isinstance(join_as("bob", 4), WaitlistJoined)
    full = join_as("cy", 5)
    assert isinstance(full, CommandFailed) and full.reason == "waitlist_full"
    assert "store's waitlist is full" in full.detail
    leave = LeaveWaitlist(idempotency_key="l1", waitlist_entry_id="w1", customer_ref="ann")
    assert of(proc.handle(env("berlin", leave, NOW), NOW), WaitlistLeft)
    assert isinstance(join_as("cy", 6), WaitlistJoined)  # a place freed


def test_joins_are_refused_while_the_stores_waitlist_record_is_past_its_budget() -> None:
    proc, tables = berlin_store()
    assert isinstance(join(proc, 1, NOW)[0].payload, WaitlistJoined)
    record = tables.waitlist["berlin"]
    padding = "x" * (waitlist_desk.WAITLIST_RECORD_BUDGET + 1)
    tables.waitlist["berlin"] = {**record, "state": {**record["state"], "padding": padding}}
    refused = join(proc, 2, NOW)[0].payload
    assert isinstance(refused, CommandFailed) and refused.reason == "waitlist_full"


def _padded(tables: ProcessorTables, to_bytes: int) -> None:
    """The store's waitlist record made `to_bytes` long (decoding ignores the padding)."""
    record = tables.waitlist["berlin"]
    short = len(orjson.dumps(record))
    padding = "x" * max(0, to_bytes - short - len(',"padding":""'))
    tables.waitlist["berlin"] = {**record, "state": {**record["state"], "padding": padding}}


def test_a_cancellation_still_succeeds_when_the_waitlist_has_no_room_for_offers() -> None:
    """Offers are what make a store's waitlist record grow; past their budget the freed slot
    goes back to everyone rather than the cancellation failing on an oversized record."""
    proc, tables = full_day_with_five_waiting()
    _padded(tables, waitlist_desk.OFFERS_BUDGET + 1)
    out = cancel(proc, "b-kA", NOW)
    assert of(out, BookingCancelled) and not of(out, SlotOffered)
    assert free_at(out, "09:00")


def test_a_new_shift_stops_offering_once_the_records_budget_is_spent(monkeypatch) -> None:
    proc, tables = berlin_store()
    next_day = DAY + dt.timedelta(days=1)
    for n in range(1, 7):
        join(proc, n, NOW, date_from=next_day, date_to=next_day)
    size = len(orjson.dumps(tables.waitlist["berlin"]))
    monkeypatch.setattr(waitlist_desk, "OFFERS_BUDGET", size + 1)  # room for one start's offers
    shift = ShiftPublished(shift_id="A-new", optometrist_id="A", store_id="berlin",
                           date=next_day, start="10:00", end="12:00")  # fmt: skip
    offers = of(proc.handle(env("berlin", shift, NOW), NOW), SlotOffered)
    assert len(offers) == 3 and len({o.slot_start for o in offers}) == 1


def _held_nine_oclock() -> tuple[AvailabilityProcessor, list[SlotOffered]]:
    """09:00 is full; A's 09:00 then frees and is held for c1-c3 (c4, c5 wait behind them)."""
    proc, _ = full_day_with_five_waiting()
    offers = of(cancel(proc, "b-kA", NOW), SlotOffered)
    assert sorted(o.customer_ref for o in offers) == ["c1", "c2", "c3"]
    return proc, offers


def _held_with_c_free() -> tuple[AvailabilityProcessor, list[SlotOffered]]:
    """A third optometrist C (general, 09-13); A's 09:00 is held for c1-c3, C's 09:00 is
    free and unheld (every waiting customer already holds an offer at that time)."""
    proc, _ = berlin_store()
    joined = OptometristJoined(optometrist_id="C", name="C", skills=["general"],
                               home_store_id="berlin", store_ids=["berlin"])  # fmt: skip
    shift = ShiftPublished(shift_id="C-1", optometrist_id="C", store_id="berlin",
                           date=DAY, start="09:00", end="13:00")  # fmt: skip
    for event in (joined, shift):
        proc.handle(env("berlin", event, NOW), NOW)
    for who in ("A", "B", "C"):
        proc.handle(request("berlin", at("09:00"), key=f"k{who}", customer=f"x{who}",
                            optometrist=who, now=NOW), NOW)  # fmt: skip
    for n in (1, 2, 3):
        join(proc, n, NOW, time_from="09:00", time_to="09:30")
    offers = of(cancel(proc, "b-kA", NOW), SlotOffered)
    assert not of(cancel(proc, "b-kC", NOW), SlotOffered)
    return proc, offers


def test_an_offered_customer_who_books_the_held_slot_directly_has_accepted_the_offer() -> None:
    proc, offers = _held_nine_oclock()
    out = proc.handle(
        request("berlin", at("09:00"), key="direct", customer="c1", optometrist="A", now=NOW), NOW
    )
    (confirmed,) = of(out, BookingConfirmed)
    own = next(o for o in offers if o.customer_ref == "c1")
    assert (confirmed.offer_token, confirmed.waitlist_entry_id) == (own.offer_token, "w1")
    assert sorted(t.customer_ref for t in of(out, OfferTaken)) == ["c2", "c3"]
    assert [(left.waitlist_entry_id, left.reason) for left in of(out, WaitlistLeft)] == [
        ("w1", "filled")
    ]
    assert FactKind.WAITLIST_FILLED in [f.fact for f in of(out, BookingFact)]
    other = next(o for o in offers if o.customer_ref == "c2")
    (late,) = of(accept(proc, other.offer_token, "c2", "too-late", NOW), BookingRejected)
    assert late.reason == "offer_taken"


def test_a_reschedule_into_the_customers_own_held_slot_settles_the_offer() -> None:
    proc, _ = _held_nine_oclock()
    mine = request("berlin", at("15:00"), key="mine", customer="c1", optometrist="A", now=NOW)
    booking_id = of(proc.handle(mine, NOW), BookingConfirmed)[0].booking_id
    move = RescheduleBooking(idempotency_key="m", booking_id=booking_id, new_slot_start=at("09:00"))
    out = proc.handle(env("berlin", move, NOW), NOW)
    assert of(out, BookingRescheduled)
    assert sorted(t.customer_ref for t in of(out, OfferTaken)) == ["c2", "c3"]
    state = proc.waitlist.state("berlin")
    assert state.entries["w1"].status == wl.EntryStatus.FILLED
    assert not [o for o in state.offers.values() if o.state == wl.OfferState.LIVE]


def test_a_roster_change_rehomes_outside_held_slots_when_it_can_and_withdraws_them_when_not():
    proc, offers = _held_with_c_free()
    sick = LeaveGranted(leave_id="s1", optometrist_id="B", start_date=DAY, end_date=DAY,
                        kind="sick")  # fmt: skip
    out = proc.handle(env("berlin", sick, NOW), NOW)
    (moved,) = of(out, BookingReassigned)
    assert moved.to_optometrist_id == "C" and not of(out, OfferTaken)  # C was free, unheld

    also_sick = sick.model_copy(update={"leave_id": "s2", "optometrist_id": "C"})
    out = proc.handle(env("berlin", also_sick, NOW), NOW)
    (moved,) = of(out, BookingReassigned)
    assert moved.to_optometrist_id == "A"  # only the held slot was left: the booking wins
    assert sorted(t.customer_ref for t in of(out, OfferTaken)) == ["c1", "c2", "c3"]
    (refused,) = of(accept(proc, offers[0].offer_token, offers[0].customer_ref, "x", NOW),
                    BookingRejected)  # fmt: skip
    assert refused.reason == "offer_taken"


def test_alternatives_sent_to_customers_leave_out_slots_held_for_others() -> None:
    proc, _ = berlin_store()

    def book(hhmm: str, key: str, who: str) -> None:
        proc.handle(request("berlin", at(hhmm), key=key, customer=key, optometrist=who,
                            now=NOW), NOW)  # fmt: skip

    for hhmm, key, who in (("10:30", "zA", "A"), ("11:00", "yA", "A"), ("11:00", "yB", "B"),
                           ("11:30", "qA", "A")):  # fmt: skip
        book(hhmm, key, who)
    for n in (1, 2):
        join(proc, n, NOW, time_from="10:30", time_to="11:00")
    held = {o.slot_start for o in of(cancel(proc, "b-zA", NOW), SlotOffered)}
    assert held == {at("10:30")}
    sick = LeaveGranted(leave_id="s1", optometrist_id="B", start_date=DAY, end_date=DAY,
                        kind="sick")  # fmt: skip
    (displaced,) = of(proc.handle(env("berlin", sick, NOW), NOW), BookingDisplaced)
    assert displaced.alternatives and held.isdisjoint(displaced.alternatives)


def test_an_offer_taken_suggests_no_slot_held_for_another_offer() -> None:
    proc, _ = berlin_store()
    for hhmm, n in (("09:00", 1), ("09:30", 2), ("10:00", 3)):
        for who in ("A", "B"):
            proc.handle(request("berlin", at(hhmm), key=f"k{who}{n}", customer=f"x{who}{n}",
                                optometrist=who, now=NOW), NOW)  # fmt: skip
    for n in (1, 2):
        join(proc, n, NOW, time_from="09:00", time_to="09:30")
    join(proc, 3, NOW, time_from="09:30", time_to="10:00")
    first = of(cancel(proc, "b-kA1", NOW), SlotOffered)
    held = {o.slot_start for o in of(cancel(proc, "b-kB2", NOW), SlotOffered)}
    assert held == {at("09:30")}
    won = accept(proc, first[0].offer_token, first[0].customer_ref, "acc", NOW)
    (taken,) = of(won, OfferTaken)
    assert taken.alternatives and held.isdisjoint(taken.alternatives)


def test_a_hold_elsewhere_does_not_move_a_reschedule_to_another_optometrist() -> None:
    proc, _ = _held_nine_oclock()
    mine = request("berlin", at("10:00"), key="mine", customer="me", optometrist="A", now=NOW)
    booking_id = of(proc.handle(mine, NOW), BookingConfirmed)[0].booking_id
    move = RescheduleBooking(idempotency_key="m", booking_id=booking_id, new_slot_start=at("10:30"))
    (moved,) = of(proc.handle(env("berlin", move, NOW), NOW), BookingRescheduled)
    assert moved.new_optometrist_id == "A"


def test_offers_follow_a_swapped_shift_to_its_new_optometrist() -> None:
    proc, _ = berlin_store()
    later = DAY + dt.timedelta(days=1)  # only A works, 09-13
    shift = ShiftPublished(shift_id="A-later", optometrist_id="A", store_id="berlin",
                           date=later, start="09:00", end="13:00")  # fmt: skip
    proc.handle(env("berlin", shift, NOW), NOW)
    nine = at("09:00") + dt.timedelta(days=1)
    proc.handle(request("berlin", nine, key="kA", customer="xA", optometrist="A", now=NOW), NOW)
    for n in range(1, 5):
        join(proc, n, NOW, date_from=later, date_to=later, time_from="09:00", time_to="09:30")
    offers = of(cancel(proc, "b-kA", NOW), SlotOffered)
    assert {o.optometrist_id for o in offers} == {"A"}
    swap = ShiftChanged(shift_id="A-later", optometrist_id="B", store_id="berlin", date=later,
                        start="09:00", end="13:00")  # fmt: skip
    out = proc.handle(env("berlin", swap, NOW), NOW)
    assert not of(out, SlotOffered) and not of(out, OfferExpired)  # the same offers, moved
    won = accept(proc, offers[0].offer_token, offers[0].customer_ref, "acc", NOW)
    (confirmed,) = of(won, BookingConfirmed)
    assert confirmed.optometrist_id == "B"


def test_offers_nobody_can_serve_after_a_roster_change_are_withdrawn_not_spent() -> None:
    proc, _ = full_day_with_five_waiting()
    proc.waitlist.k = 1
    (offer,) = of(cancel(proc, "b-kA", NOW), SlotOffered)
    gone = ShiftCancelled(shift_id=f"A-{DAY}", optometrist_id="A", store_id="berlin", date=DAY)
    (expired,) = of(proc.handle(env("berlin", gone, NOW), NOW), OfferExpired)
    assert expired.offer_token == offer.offer_token
    (refused,) = of(accept(proc, offer.offer_token, offer.customer_ref, "a1", NOW), BookingRejected)
    assert refused.reason == "offer_expired"
    # B's 09:00 frees: the same customer is first again, not shut out by the withdrawn offer.
    (again,) = of(cancel(proc, "b-kB", NOW), SlotOffered)
    assert (again.customer_ref, again.optometrist_id) == (offer.customer_ref, "B")


def test_moving_an_ended_booking_into_a_held_slot_names_the_booking_not_the_hold() -> None:
    proc, _ = berlin_store()
    for key, who, hhmm in [("kA", "A", "10:00"), ("kB", "B", "10:00"), ("me", "B", "09:00")]:
        booked = proc.handle(request("berlin", at(hhmm), key=key, customer=key, optometrist=who,
                                     now=NOW), NOW)  # fmt: skip
        assert of(booked, BookingConfirmed)
    join(proc, 1, NOW, time_from="10:00", time_to="10:30")
    ended = at("09:45")  # my 09:00-09:30 exam is over
    assert of(cancel(proc, "b-kA", ended), SlotOffered)  # 10:00 with A is now held for c1
    move = RescheduleBooking(idempotency_key="mv", booking_id="b-me", new_slot_start=at("10:00"))
    (failed,) = of(proc.handle(env("berlin", move, ended), ended), CommandFailed)
    assert failed.reason == "invalid_transition" and "ended" in failed.detail


def test_capacity_a_skill_opens_is_offered_to_the_waitlist_once_per_entry() -> None:
    proc, _ = berlin_store()
    proc.handle(request("berlin", at("09:00"), key="kA", customer="xA", exam="dilated",
                        optometrist="A", now=NOW), NOW)  # fmt: skip
    join(proc, 1, NOW, exam_type="dilated", time_from="09:00", time_to="10:00")
    join(proc, 2, NOW, exam_type="dilated", date_to=DAY + dt.timedelta(days=30))
    dilates = OptometristJoined(optometrist_id="B", name="B", skills=["general", "dilation"],
                                home_store_id="berlin", store_ids=["berlin"])  # fmt: skip
    offers = of(proc.handle(env("berlin", dilates, NOW), NOW), SlotOffered)
    assert {(o.waitlist_entry_id, o.optometrist_id) for o in offers} >= {("w1", "B")}
    assert sorted(o.waitlist_entry_id for o in offers) == ["w1", "w2"]  # one each, not per day
