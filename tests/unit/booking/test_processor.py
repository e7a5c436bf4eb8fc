"""The availability processor against plain dict tables: every decision and its events."""

from __future__ import annotations

import datetime as dt

from schemas.events.availability import StoreDayAvailability
from schemas.events.booking import (
    BookingCancelled,
    BookingConfirmed,
    BookingDisplaced,
    BookingRejected,
    BookingRescheduled,
    CancelBooking,
    CheckInBooking,
    CommandFailed,
    CompleteBooking,
    ExamResultPosted,
    MarkNoShow,
    PostExamResult,
    RescheduleBooking,
)
from schemas.events.facts import BookingFact
from schemas.events.roster import (
    ExamTypeDefined,
    OptometristJoined,
    ShiftPublished,
    StoreHoursChanged,
    StoreRegistered,
    TrainingScheduled,
)
from schemas.serde import decode, encode
from services.booking.adapters.processor_state import config_from_json
from services.booking.adapters.views import apply_roster_event
from services.booking.domain.calendar import local_interval
from services.booking.domain.decisions import opening_windows

from .storefixture import berlin_store, env, request

DAY = dt.date(2026, 12, 7)
NOW = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)


def at(hhmm: str, day: dt.date = DAY, offset_h: int = 1) -> dt.datetime:
    """Berlin local time in December (UTC+1) as a UTC instant."""
    h, m = map(int, hhmm.split(":"))
    return dt.datetime(day.year, day.month, day.day, h - offset_h, m, tzinfo=dt.UTC)


def payloads(outputs, cls):
    return [o.payload for o in outputs if isinstance(o.payload, cls)]


def free(outputs, exam="standard"):
    view = payloads(outputs, StoreDayAvailability)[-1]
    return dict(zip(view.exam_types[exam].free_starts, view.exam_types[exam].capacity, strict=True))


def test_least_loaded_qualified_optometrist_wins_then_slot_is_taken():
    proc, _ = berlin_store()
    first = proc.handle(request("berlin", at("10:00"), key="k1", customer="c1", now=NOW), NOW)
    second = proc.handle(request("berlin", at("10:00"), key="k2", customer="c2", now=NOW), NOW)
    third = proc.handle(request("berlin", at("10:00"), key="k3", customer="c3", now=NOW), NOW)
    a = payloads(first, BookingConfirmed)[0]
    b = payloads(second, BookingConfirmed)[0]
    assert {a.optometrist_id, b.optometrist_id} == {"A", "B"}
    assert a.local_start == "2026-12-07T10:00:00+01:00"
    assert a.slot_end - a.slot_start == dt.timedelta(minutes=30)
    rejected = payloads(third, BookingRejected)[0]
    assert rejected.reason == "slot_taken"
    assert 1 <= len(rejected.alternatives) <= 3
    assert at("10:00") not in rejected.alternatives
    assert "10:00" not in free(second)
    assert free(first)["10:00"] == 1  # one of two optometrists still free
    facts = [f.fact for f in payloads(third, BookingFact)]
    assert facts == ["requested", "rejected"]


def test_events_carry_correlation_and_causation_of_the_command():
    proc, _ = berlin_store()
    cmd = request("berlin", at("10:00"), key="k1", now=NOW)
    outputs = proc.handle(cmd, NOW)
    assert {o.correlation_id for o in outputs} == {cmd.correlation_id}
    assert {o.causation_id for o in outputs} == {str(cmd.event_id)}
    for o in outputs:  # every output encodes to its own topic through the one serde
        assert decode(encode(o).value) == o


def test_same_key_retry_returns_the_existing_booking_never_a_second_one():
    proc, tables = berlin_store()
    first = proc.handle(request("berlin", at("10:00"), key="k1", now=NOW), NOW)
    retry = proc.handle(request("berlin", at("10:00"), key="k1", booking_id="other", now=NOW), NOW)
    booking_id = payloads(first, BookingConfirmed)[0].booking_id
    dup = payloads(retry, BookingRejected)[0]
    assert dup.reason == "duplicate" and dup.existing_booking_id == booking_id
    assert len(tables.bookings) == 1


def test_same_customer_same_slot_from_another_channel_is_the_same_booking():
    proc, tables = berlin_store()
    first = proc.handle(
        request("berlin", at("10:00"), key="wechat-1", channel="wechat", now=NOW), NOW
    )
    again = proc.handle(request("berlin", at("10:00"), key="web-9", channel="web", now=NOW), NOW)
    dup = payloads(again, BookingRejected)[0]
    assert dup.existing_booking_id == payloads(first, BookingConfirmed)[0].booking_id
    assert len(tables.bookings) == 1


def test_redelivered_command_replays_identical_events():
    proc, tables = berlin_store()
    cmd = request("berlin", at("10:00"), key="k1", now=NOW)
    first = proc.handle(cmd, NOW)
    replay = proc.handle(cmd, NOW + dt.timedelta(seconds=5))
    originals = [o for o in first if not isinstance(o.payload, StoreDayAvailability)]
    assert [o.event_id for o in replay] == [o.event_id for o in originals]
    assert [encode(o).value for o in replay] == [encode(o).value for o in originals]
    assert len(tables.bookings) == 1


def test_bad_slots_are_rejected_with_reasons():
    proc, _ = berlin_store()
    cases = {
        "in_past": request("berlin", NOW - dt.timedelta(hours=1), key="p", now=NOW),
        "not_on_grid": request("berlin", at("10:05"), key="g", now=NOW),
        "outside_hours": request("berlin", at("17:45"), key="h", now=NOW),
        "unknown_exam_type": request("berlin", at("10:00"), key="e", exam="lasik", now=NOW),
        "no_shift": request("berlin", at("17:00"), key="s", now=NOW),  # open, nobody on shift
        "unknown_store": request("nowhere", at("10:00"), key="u", now=NOW),
    }
    for reason, cmd in cases.items():
        rejected = payloads(proc.handle(cmd, NOW), BookingRejected)
        assert [r.reason for r in rejected] == [reason], reason


def test_skill_and_breaks_are_respected():
    proc, _ = berlin_store()
    # Only A dilates, and A lunches 12-13: a 60-minute dilated exam at 11:30 does not fit.
    lunch = proc.handle(request("berlin", at("11:30"), key="d1", exam="dilated", now=NOW), NOW)
    assert payloads(lunch, BookingRejected)[0].reason == "no_shift"
    ok = proc.handle(request("berlin", at("13:00"), key="d2", exam="dilated", now=NOW), NOW)
    assert payloads(ok, BookingConfirmed)[0].optometrist_id == "A"
    wrong = proc.handle(
        request("berlin", at("09:00"), key="d3", exam="dilated", optometrist="B", now=NOW), NOW
    )
    assert payloads(wrong, BookingRejected)[0].reason == "no_skill"


def test_cancel_frees_the_slot_and_reports_lateness():
    proc, _ = berlin_store()
    booked = proc.handle(request("berlin", at("09:00"), key="k1", optometrist="B", now=NOW), NOW)
    booking_id = payloads(booked, BookingConfirmed)[0].booking_id
    late_now = at("08:00")  # one hour before
    cancel = env(
        "berlin",
        CancelBooking(booking_id=booking_id, idempotency_key="c1", by="customer"),
        late_now,
    )
    out = proc.handle(cancel, late_now)
    cancelled = payloads(out, BookingCancelled)[0]
    assert cancelled.late and cancelled.minutes_before_start == 60
    assert free(out)["09:00"] == 2
    again = proc.handle(
        env(
            "berlin",
            CancelBooking(booking_id=booking_id, idempotency_key="c2", by="customer"),
            late_now,
        ),
        late_now,
    )
    assert payloads(again, CommandFailed)[0].reason == "invalid_transition"


def test_a_cancellation_by_the_store_is_not_late_and_not_counted_as_late():
    proc, _ = berlin_store()
    booked = proc.handle(request("berlin", at("09:00"), key="k1", optometrist="B", now=NOW), NOW)
    booking_id = payloads(booked, BookingConfirmed)[0].booking_id
    an_hour_before = at("08:00")
    by_store = CancelBooking(booking_id=booking_id, idempotency_key="c1", by="store")
    out = proc.handle(env("berlin", by_store, an_hour_before), an_hour_before)
    cancelled = payloads(out, BookingCancelled)[0]
    assert not cancelled.late and cancelled.minutes_before_start == 60
    assert [f.late for f in payloads(out, BookingFact)] == [False]


def test_reschedule_is_atomic():
    proc, tables = berlin_store()
    mine = payloads(
        proc.handle(
            request("berlin", at("09:00"), key="m", customer="me", optometrist="B", now=NOW), NOW
        ),
        BookingConfirmed,
    )[0]
    proc.handle(
        request("berlin", at("11:00"), key="x", customer="x", optometrist="A", now=NOW), NOW
    )
    proc.handle(
        request("berlin", at("11:00"), key="y", customer="y", optometrist="B", now=NOW), NOW
    )
    # 11:00 is full: nothing changes, I keep 09:00
    refused = proc.handle(
        env("berlin", RescheduleBooking(booking_id=mine.booking_id, idempotency_key="r1",
                                        new_slot_start=at("11:00")), NOW),
        NOW,
    )  # fmt: skip
    assert payloads(refused, CommandFailed)[0].reason == "slot_taken"
    assert tables.bookings[mine.booking_id]["start"] == int(at("09:00").timestamp())
    moved = proc.handle(
        env("berlin", RescheduleBooking(booking_id=mine.booking_id, idempotency_key="r2",
                                        new_slot_start=at("09:15")), NOW),
        NOW,
    )  # fmt: skip
    event = payloads(moved, BookingRescheduled)[0]
    assert event.new_slot_start == at("09:15") and event.new_optometrist_id == "B"
    # an overlapping move onto my own old interval is allowed (my old slot is freed first)
    assert free(moved)["09:00"] == 1


def test_lifecycle_transitions_and_invalid_ones():
    proc, _ = berlin_store()
    booking_id = payloads(
        proc.handle(request("berlin", at("10:00"), key="k", now=NOW), NOW), BookingConfirmed
    )[0].booking_id
    before = at("09:00")
    no_show_early = proc.handle(
        env("berlin", MarkNoShow(booking_id=booking_id, idempotency_key="n1"), before), before
    )
    assert payloads(no_show_early, CommandFailed)[0].reason == "invalid_transition"
    summary_early = PostExamResult(
        booking_id=booking_id, idempotency_key="s0", optometrist_id="A", summary="too soon"
    )
    refused = proc.handle(env("berlin", summary_early, before), before)
    assert payloads(refused, CommandFailed)[0].reason == "invalid_transition"
    complete_early = proc.handle(
        env("berlin", CompleteBooking(booking_id=booking_id, idempotency_key="c0"), before), before
    )
    assert payloads(complete_early, CommandFailed)[0].reason == "invalid_transition"
    checked = proc.handle(
        env("berlin", CheckInBooking(booking_id=booking_id, idempotency_key="i1"), before), before
    )
    assert [o.type for o in checked] == ["BookingCheckedIn", "BookingFact"]
    done = proc.handle(
        env("berlin", CompleteBooking(booking_id=booking_id, idempotency_key="c1"), before), before
    )
    assert done[0].type == "BookingCompleted"
    summary = PostExamResult(
        booking_id=booking_id, idempotency_key="s1", optometrist_id="A", summary="all fine"
    )
    (posted,) = proc.handle(env("berlin", summary, before), before)
    assert isinstance(posted.payload, ExamResultPosted)
    assert (posted.payload.customer_ref, posted.payload.summary) == ("cust-1", "all fine")
    unknown = proc.handle(
        env("berlin", CheckInBooking(booking_id="nope", idempotency_key="i2"), before), before
    )
    assert payloads(unknown, CommandFailed)[0].reason == "unknown_booking"


def test_lifecycle_commands_at_times_that_make_no_sense_are_refused():
    """A cancel or move after the exam ended would turn a missed exam into a cancellation."""
    proc, tables = berlin_store()
    for key, hhmm in [("k1", "09:00"), ("k2", "10:00"), ("k3", "11:00")]:
        proc.handle(request("berlin", at(hhmm), key=key, customer=key, now=NOW), NOW)
    ended = at("15:00")
    commands = [
        CancelBooking(booking_id="b-k1", idempotency_key="c1", by="customer"),
        RescheduleBooking(booking_id="b-k2", idempotency_key="r1", new_slot_start=at("16:00")),
    ]
    for command in commands:
        (failed,) = payloads(proc.handle(env("berlin", command, ended), ended), CommandFailed)
        assert failed.reason == "invalid_transition" and "no-show" in failed.detail
    assert [tables.bookings[b]["status"] for b in ("b-k1", "b-k2")] == ["confirmed"] * 2


def test_berlin_dst_day_and_shanghai_local_slots():
    spring = dt.date(2026, 3, 29)  # clocks go 02:00 -> 03:00; 09:00 local is 07:00 UTC
    proc, _ = berlin_store(day=spring)
    now = dt.datetime(2026, 3, 20, tzinfo=dt.UTC)
    out = proc.handle(request("berlin", at("09:00", spring, offset_h=2), key="d", now=now), now)
    confirmed = payloads(out, BookingConfirmed)[0]
    assert confirmed.local_start == "2026-03-29T09:00:00+02:00"
    autumn = dt.date(2026, 10, 25)  # back to UTC+1
    proc, _ = berlin_store(day=autumn)
    out = proc.handle(request("berlin", at("09:00", autumn, offset_h=1), key="d", now=now), now)
    assert payloads(out, BookingConfirmed)[0].local_start == "2026-10-25T09:00:00+01:00"
    proc, _ = berlin_store(store_id="sh", tz="Asia/Shanghai")
    out = proc.handle(request("sh", at("09:00", offset_h=8), key="s", now=NOW), NOW)
    assert payloads(out, BookingConfirmed)[0].local_start == "2026-12-07T09:00:00+08:00"
    view = payloads(out, StoreDayAvailability)[0]
    assert view.exam_types["standard"].free_starts[0] == "09:00"


def test_idempotency_records_expire_after_the_ttl_oldest_first():
    proc, tables = berlin_store()
    proc.handle(request("berlin", at("10:00"), key="old", customer="c1", now=NOW), NOW)
    later = NOW + dt.timedelta(hours=2)
    proc.handle(request("berlin", at("11:00"), key="new", customer="c2", now=later), later)
    assert proc.expire_idempotency(NOW + dt.timedelta(hours=23)) == 0
    assert proc.expire_idempotency(NOW + dt.timedelta(hours=24, seconds=1)) == 1
    assert [k.split("|")[1] for k in tables.idem] == ["new"]
    # Past the TTL the same key is decided afresh (the second optometrist is free at 11:00).
    again = NOW + dt.timedelta(hours=27)
    proc.expire_idempotency(again)
    retry = proc.handle(request("berlin", at("11:00"), key="new", customer="c3", now=again), again)
    assert not payloads(retry, BookingRejected)
    assert len(payloads(retry, BookingConfirmed)) == 1


def test_coalesced_views_publish_each_changed_day_once_with_its_final_state():
    proc, tables = berlin_store()
    proc.coalesce_views = True
    outputs = []
    for i, hhmm in enumerate(("10:00", "10:00", "11:00")):
        cmd = request("berlin", at(hhmm), key=f"k{i}", customer=f"c{i}", now=NOW)
        outputs += proc.handle(cmd, NOW)
    assert not payloads(outputs, StoreDayAvailability)
    flushed = proc.flush_views()
    (view,) = payloads(flushed, StoreDayAvailability)
    slots = free(flushed)
    assert "10:00" not in slots and slots["11:00"] == 1
    assert view.seq == tables.days[f"berlin|{DAY.isoformat()}"]["seq"]
    assert proc.flush_views() == []


def test_a_key_used_again_for_another_request_is_refused_without_the_first_result():
    proc, tables = berlin_store()
    first = proc.handle(request("berlin", at("10:00"), key="k1", customer="c1", now=NOW), NOW)
    assert payloads(first, BookingConfirmed)
    other = proc.handle(request("berlin", at("11:00"), key="k1", customer="c2", now=NOW), NOW)
    assert [o.type for o in other] == ["CommandFailed"]
    failed = payloads(other, CommandFailed)[0]
    assert (failed.reason, failed.booking_id) == ("idempotency_key_reused", "b-k1")
    assert len(tables.bookings) == 1
    booking_id = payloads(first, BookingConfirmed)[0].booking_id
    as_cancel = CancelBooking(booking_id=booking_id, idempotency_key="k1", by="customer")
    refused = proc.handle(env("berlin", as_cancel, NOW), NOW)
    assert payloads(refused, CommandFailed)[0].reason == "idempotency_key_reused"
    assert not payloads(refused, BookingCancelled)


def test_a_change_retried_with_its_key_answers_as_the_first_time_and_changes_nothing():
    proc, _ = berlin_store()
    booked = proc.handle(request("berlin", at("10:00"), key="k1", now=NOW), NOW)
    booking_id = payloads(booked, BookingConfirmed)[0].booking_id
    cancel = CancelBooking(booking_id=booking_id, idempotency_key="c1", by="customer")
    first = proc.handle(env("berlin", cancel, NOW), NOW)
    (cancelled,) = [o for o in first if isinstance(o.payload, BookingCancelled)]
    retry = env("berlin", cancel, NOW)
    again = proc.handle(retry, NOW)
    assert [o.type for o in again] == ["CommandFailed"]  # no second cancellation
    done = payloads(again, CommandFailed)[0]
    assert (done.reason, done.command_event_id) == ("duplicate", str(retry.event_id))
    assert done.decided_event_id == str(cancelled.event_id)  # what the API waits to see

    late = CancelBooking(booking_id=booking_id, idempotency_key="c2", by="customer")
    refusal = payloads(proc.handle(env("berlin", late, NOW), NOW), CommandFailed)[0]
    assert refusal.reason == "invalid_transition"
    retry = env("berlin", late, NOW)
    repeated = payloads(proc.handle(retry, NOW), CommandFailed)[0]
    assert (repeated.reason, repeated.detail) == (refusal.reason, refusal.detail)
    assert repeated.command_event_id == str(retry.event_id)


def test_idempotency_records_written_before_fingerprints_count_as_the_same_request():
    proc, tables = berlin_store()
    proc.handle(request("berlin", at("10:00"), key="k1", now=NOW), NOW)
    del tables.idem["berlin|k1"]["fp"]
    retry = proc.handle(request("berlin", at("11:00"), key="k1", booking_id="b2", now=NOW), NOW)
    assert payloads(retry, BookingRejected)[0].existing_booking_id == "b-k1"


def test_store_wide_roster_changes_republish_every_day_and_rehome_what_they_strand():
    """A new or retired exam type, hours sent with the store's registration and a removed
    skill change what every day offers, not one day's: each stored day from today on gets a
    fresh view (a higher seq, so Redis takes it) and its stranded bookings are re-homed."""
    proc, _ = berlin_store()
    booked = proc.handle(request("berlin", at("16:00"), key="k1", optometrist="A", now=NOW), NOW)
    seq = payloads(booked, StoreDayAvailability)[-1].seq

    contact = ExamTypeDefined(code="contact", name="Contact lenses", duration_minutes=40,
                              required_skill="general")  # fmt: skip
    out = proc.handle(env("berlin", contact, NOW), NOW)
    (view,) = payloads(out, StoreDayAvailability)
    assert view.seq > seq and "09:00" in view.exam_types["contact"].free_starts
    assert proc.handle(env("berlin", contact, NOW), NOW) == []  # the same again: nothing

    retired = contact.model_copy(update={"active": False})
    (view,) = payloads(proc.handle(env("berlin", retired, NOW), NOW), StoreDayAvailability)
    assert "contact" not in view.exam_types

    no_dilation = OptometristJoined(optometrist_id="A", name="A", skills=["general"],
                                    home_store_id="berlin", store_ids=["berlin"])  # fmt: skip
    (view,) = payloads(proc.handle(env("berlin", no_dilation, NOW), NOW), StoreDayAvailability)
    assert not view.exam_types["dilated"].free_starts

    hours = {d: [{"open": "09:00", "close": "12:00"}] for d in range(7)}
    shorter = StoreRegistered(store_id="berlin", name="S", region="eu", timezone="Europe/Berlin",
                              opening_hours=hours, slot_minutes=15)  # fmt: skip
    out = proc.handle(env("berlin", shorter, NOW), NOW)
    (displaced,) = payloads(out, BookingDisplaced)
    assert displaced.cause == "store_hours_changed" and displaced.booking_id == "b-k1"
    assert max(payloads(out, StoreDayAvailability)[0].exam_types["standard"].free_starts) == "11:30"


def test_scheduled_opening_hours_apply_from_their_date_in_the_processor_and_the_api_alike():
    """StoreHoursChanged with `effective_from`: bookings before it stay, those from it on are
    re-homed, and the processor reads the hours on every date as the API's catalog does."""
    proc, tables = berlin_store()
    later = DAY + dt.timedelta(days=7)
    shift = ShiftPublished(shift_id="A-later", optometrist_id="A", store_id="berlin", date=later,
                           start="09:00", end="17:00")  # fmt: skip
    proc.handle(env("berlin", shift, NOW), NOW)
    for key, when in (("now", at("16:00")), ("later", at("16:00", later))):
        proc.handle(request("berlin", when, key=key, optometrist="A", now=NOW), NOW)
    mornings = {d: [{"open": "09:00", "close": "12:00"}] for d in range(7)}
    change = StoreHoursChanged(store_id="berlin", opening_hours=mornings, effective_from=later,
                               closed_dates=[DAY + dt.timedelta(days=1)])  # fmt: skip
    out = proc.handle(env("berlin", change, NOW), NOW)
    assert [d.booking_id for d in payloads(out, BookingDisplaced)] == ["b-later"]
    assert tables.bookings["b-now"]["status"] == "confirmed"

    catalog = None
    registered = StoreRegistered(store_id="berlin", name="S", region="eu",
                                 timezone="Europe/Berlin", slot_minutes=15,
                                 opening_hours={d: [{"open": "09:00", "close": "18:00"}]
                                                for d in range(7)})  # fmt: skip
    for event in (registered, change):
        catalog = apply_roster_event(catalog, event)
    assert catalog is not None
    cfg = config_from_json(tables.configs["berlin"])
    for offset in range(-1, 10):
        date = DAY + dt.timedelta(days=offset)
        in_catalog, _ = catalog.hours_on(date)
        assert opening_windows(cfg, date) == [
            w for i in in_catalog if (w := local_interval(date, i.open, i.close, cfg.timezone))
        ], date


def test_a_reschedule_to_the_bookings_own_slot_is_refused_and_changes_nothing():
    proc, tables = berlin_store()
    booked = proc.handle(request("berlin", at("10:00"), key="k1", optometrist="A", now=NOW), NOW)
    booking_id = payloads(booked, BookingConfirmed)[0].booking_id
    same = RescheduleBooking(idempotency_key="r", booking_id=booking_id, new_slot_start=at("10:00"))
    out = proc.handle(env("berlin", same, NOW), NOW)
    assert [p.reason for p in payloads(out, CommandFailed)] == ["invalid_transition"]
    assert not payloads(out, BookingRescheduled) and not payloads(out, BookingFact)
    assert tables.bookings[booking_id]["version"] == 1


def test_training_set_in_another_stores_time_zone_keeps_the_optometrist_away_here():
    """Tuesday 8 Dec 00:00-02:00 on Kiritimati (UTC+14) is Monday 7 Dec 11:00-13:00 in
    Berlin: the absence must be on Berlin's Monday, not under the event's date."""
    proc, _ = berlin_store()
    training = TrainingScheduled(
        training_id="t1", optometrist_id="A", date=dt.date(2026, 12, 8), start="00:00",
        end="02:00", timezone="Pacific/Kiritimati",
        start_utc=at("11:00"), end_utc=at("13:00"),
    )  # fmt: skip
    proc.handle(env("berlin", training, NOW), NOW)
    refused = proc.handle(request("berlin", at("11:00"), key="k", optometrist="A", now=NOW), NOW)
    assert payloads(refused, BookingRejected)[0].reason == "no_shift"
