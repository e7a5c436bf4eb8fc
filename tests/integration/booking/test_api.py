"""The booking API end to end through the real broker, Redis and FerretDB: the command goes
out on `booking.commands.v1`, a fake decider answers on `booking.events.v1`, the reply waiter
maps the decision to HTTP, the in-process projector writes what the reads return."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Any

import httpx
import pytest

from schemas.events.availability import ExamTypeSlots, StoreDayAvailability
from schemas.events.booking import WaitlistJoined, WaitlistLeft
from services.booking.adapters.bookings import BookingRepository
from services.booking.api.presenters import render_availability
from services.booking.api.routes.bookings import prepare_booking
from services.booking.web.tokens import manage_token
from tests.integration.booking.helpers import TZ, api_client, eventually

PROBLEM = "application/problem+json"


def booking_body(
    store, hhmm: str = "10:00", customer: str = "cust", name: str = "Ana", **extra: Any
) -> dict[str, Any]:
    return {
        "store_id": store.store_id,
        "exam_type": "std",
        "slot_start": store.at(hhmm).isoformat(),
        "channel": "web",
        "customer": {"customer_ref": f"{customer}-{store.store_id}", "name": name, "locale": "en"},
        **extra,
    }


async def book(api, store, key: str | None = None, **body: Any) -> httpx.Response:
    headers = {"Idempotency-Key": key or uuid.uuid4().hex}
    return await api.post("/v1/bookings", json=booking_body(store, **body), headers=headers)


def problem(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM
    body = resp.json()
    assert body["code"] == code, body
    return body


async def test_a_booking_is_confirmed_with_utc_and_store_local_times(api, store, decider):
    resp = await book(api, store, hhmm="10:15")
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert resp.headers["location"] == f"/v1/bookings/{body['booking_id']}"
    local = store.at("10:15")
    assert body["status"] == "confirmed"
    assert body["local_start"] == local.isoformat()
    assert body["slot_start"] == local.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    assert body["local_end"] == (local + dt.timedelta(minutes=30)).isoformat()
    assert body["customer_ref"] == f"cust-{store.store_id}" and body["channel"] == "web"
    assert [h["event"] for h in body["history"]] == ["confirmed"]

    async def projected() -> httpx.Response | None:
        got = await api.get(f"/v1/bookings/{body['booking_id']}")
        return got if got.status_code == 200 else None

    assert (await eventually(projected)).json() == body  # the read model says the same
    problem(await api.get("/v1/bookings/nope"), 404, "unknown_booking")


async def test_repeats_return_the_existing_booking_never_a_second_one(
    api, store, decider, resources
):
    first = await book(api, store, key="key-1")
    assert first.status_code == 201, first.text
    booking_id = first.json()["booking_id"]
    # Same key again (a client retry): the same booking, still 201.
    again = await book(api, store, key="key-1")
    assert (again.status_code, again.json()["booking_id"]) == (201, booking_id)
    # Same customer, same slot, another channel and key: the existing booking, 200.
    other = await book(api, store, key="key-2", channel="whatsapp")
    assert (other.status_code, other.json()["booking_id"]) == (200, booking_id)
    assert other.json()["channel"] == "web"  # the booking as it was made
    # The channel's message id is the key when no header is sent.
    body = booking_body(store, "11:00", customer="chat", channel_message_id="wx-1")
    by_msg = await api.post("/v1/bookings", json=body)
    assert by_msg.status_code == 201, by_msg.text
    by_msg_again = await api.post("/v1/bookings", json=body)
    assert (by_msg_again.status_code, by_msg_again.json()) == (201, by_msg.json())
    assert [c.payload.idempotency_key for c in decider.seen[-2:]] == ["web:wx-1", "web:wx-1"]

    repo = BookingRepository(resources.db)
    assert await repo.coll.count_documents({"store_id": store.store_id}) == 2


async def test_a_taken_slot_is_409_with_alternatives_in_both_times(api, store, decider):
    assert (await book(api, store, hhmm="12:00", customer="a")).status_code == 201
    body = problem(await book(api, store, hhmm="12:00", customer="b"), 409, "slot_taken")
    alternative = store.at("12:30")
    assert body["alternatives"] == [
        {
            "start": alternative.isoformat(),
            "start_utc": alternative.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        }
    ]


@pytest.mark.parametrize(
    ("reason", "status", "code"),
    [
        ("no_shift", 409, "no_shift"),
        ("held", 409, "held"),
        ("outside_hours", 422, "outside_opening_hours"),
        ("unknown_store", 404, "unknown_store"),
        ("in_past", 422, "in_past"),
    ],
)
async def test_processor_rejections_map_to_http(api, store, decider, reason, status, code):
    problem(await book(api, store, name=f"reject:{reason}"), status, code)


async def test_bad_requests_are_refused_before_anything_is_produced(api, store, decider, clock):
    sid = store.store_id
    key = {"Idempotency-Key": "k"}
    problem(
        await api.post("/v1/bookings", json=booking_body(store)), 400, "missing_idempotency_key"
    )
    unknown = booking_body(store) | {"store_id": f"nope-{sid}"}
    problem(await api.post("/v1/bookings", json=unknown, headers=key), 404, "unknown_store")
    exam = booking_body(store) | {"exam_type": "lasik"}
    problem(await api.post("/v1/bookings", json=exam, headers=key), 422, "unknown_exam_type")
    problem(await book(api, store, hhmm="10:10"), 422, "not_on_grid")
    problem(await book(api, store, hhmm="17:45"), 422, "outside_opening_hours")
    problem(await book(api, store, hhmm="08:00"), 422, "outside_opening_hours")
    naive = booking_body(store) | {"slot_start": store.at("10:00").replace(tzinfo=None).isoformat()}
    body = problem(await api.post("/v1/bookings", json=naive, headers=key), 422, "invalid_request")
    assert body["errors"][0]["loc"] == ["body", "slot_start"]
    wrong = booking_body(store) | {"channel": "fax", "customer": "me"}
    problem(await api.post("/v1/bookings", json=wrong, headers=key), 422, "invalid_request")
    extra = booking_body(store) | {"slot": "tomorrow"}
    problem(await api.post("/v1/bookings", json=extra, headers=key), 422, "invalid_request")
    malformed = await api.post(
        "/v1/bookings",
        content=b'{"store_id": ',
        headers={**key, "content-type": "application/json"},
    )
    problem(malformed, 400, "malformed_json")
    huge = await api.post(
        "/v1/bookings", content=b"x" * 70_000, headers={**key, "content-type": "application/json"}
    )
    problem(huge, 413, "payload_too_large")
    # The injected clock decides what is past.
    saved = clock.now()
    clock.set(store.at("10:05"))
    try:
        problem(await book(api, store, hhmm="10:00"), 422, "in_past")
    finally:
        clock.set(saved)
    assert decider.seen == []  # none of these reached the processor
    assert (await book(api, store)).status_code == 201
    assert len(decider.seen) == 1


@pytest.mark.parametrize("day", ["0001-01-01", "1999-12-31", "3000-01-01", "9999-12-31"])
async def test_days_and_times_at_the_ends_of_the_calendar_are_422_never_500(
    api, store, decider, day
):
    # A store-local day at either end of Python's range overflowed when converted to UTC
    # (or when the day after it was taken): the store day list and a booking answered 500.
    sid = store.store_id
    key = {"Idempotency-Key": uuid.uuid4().hex}
    instant = f"{day}T23:45:00+00:00" if day > "2000" else f"{day}T00:00:00-05:00"
    answers = [
        await api.get(f"/v1/stores/{sid}/bookings", params={"date": day}),
        await api.get(f"/v1/stores/{sid}/availability", params={"date": day, "exam_type": "std"}),
        await api.get(f"/v1/stores/{sid}/waitlist", params={"date": day}),
        await api.post("/v1/bookings", json=booking_body(store) | {"slot_start": instant},
                       headers=key),
        await api.post("/v1/bookings/any/reschedule", json={"slot_start": instant}, headers=key),
        await api.post("/pages/api/bookings", headers=key, json={
            "store_id": sid, "exam_type": "std", "slot_start": instant, "name": "Ana",
            "phone": "+86 138 0013 8000",
        }),
    ]  # fmt: skip
    for resp in answers:
        body = problem(resp, 422, "invalid_request")
        assert body["errors"][0]["loc"][-1] in ("date", "slot_start"), body
    assert decider.seen == []


async def test_no_decision_in_time_is_202_and_the_status_url_gets_the_late_outcome(
    booking_settings, projector, store, decider, clock
):
    quick = booking_settings.model_copy(update={"decision_timeout_s": 0.3})
    async with api_client(quick, clock) as api:
        decider.silent = True
        resp = await book(api, store, hhmm="15:00")
        assert resp.status_code == 202, resp.text
        accepted = resp.json()
        status_url = f"/v1/commands/{accepted['correlation_id']}"
        assert accepted["status_url"] == status_url == resp.headers["location"]
        assert accepted["status"] == "pending"
        assert (await api.get(status_url)).json() == {"status": "pending"}

        # The decision arrives late: the waiter still records it under the status URL.
        async def seen_by_decider() -> Any:  # a slow host may deliver it after the 202
            return decider.seen[-1] if decider.seen else None

        command = await eventually(seen_by_decider)
        decider.silent = False
        reply = decider.decide(command)
        assert reply is not None
        await decider.answer(command, reply)

        async def done() -> dict[str, Any] | None:
            got = (await api.get(status_url)).json()
            return got if got["status"] == "done" else None

        outcome = await eventually(done)
        assert outcome["http_status"] == 201
        assert outcome["body"]["booking_id"] == accepted["booking_id"]
        assert outcome["body"]["local_start"] == store.at("15:00").isoformat()
        problem(await api.get(f"/v1/commands/{uuid.uuid4().hex}"), 404, "unknown_command")
        problem(await api.get("/v1/commands/not-an-id"), 422, "invalid_request")


async def test_a_202s_status_url_gets_its_outcome_after_the_api_that_answered_it_is_gone(
    booking_settings, projector, store, decider, clock
):
    """A restart between a 202 and its decision (a rolling deploy): no process waits for the
    decision any more, so a status read finds it in booking.events.v1 itself, for a booking
    request and for a change, and never shows the lookup's own state."""
    quick = booking_settings.model_copy(update={
        "decision_timeout_s": 0.3, "late_decision_after_s": 0.0, "late_decision_every_s": 0.2,
    })  # fmt: skip
    async with api_client(quick, clock) as api:
        booked = await book(api, store, hhmm="16:00")
        assert booked.status_code == 201, booked.text
    seen_before = len(decider.seen)
    decider.silent = True
    async with api_client(quick, clock) as first:
        requested = await book(first, store, hhmm="16:30")
        cancelled = await first.post(
            f"/v1/bookings/{booked.json()['booking_id']}/cancel",
            json={"by": "customer"},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
    assert requested.status_code == cancelled.status_code == 202, (requested, cancelled)
    status_urls = [requested.json()["status_url"], cancelled.json()["status_url"]]

    async def both_commands_seen() -> list[Any] | None:
        return decider.seen[seen_before:] if len(decider.seen) >= seen_before + 2 else None

    commands = await eventually(both_commands_seen)
    async with api_client(quick, clock) as second:
        # Overdue, not awaited here: looked up, not found yet, still plainly pending.
        for url in status_urls:
            assert (await second.get(url)).json() == {"status": "pending"}
        decider.silent = False
        for command in commands:
            reply = decider.decide(command)
            assert reply is not None
            await decider.answer(command, reply)

        async def all_done() -> list[dict[str, Any]] | None:
            got = [(await second.get(url)).json() for url in status_urls]
            return got if all(g["status"] == "done" for g in got) else None

        made, changed = await eventually(all_done)
        metrics = (await second.get("/metrics")).text
        assert 'optisync_booking_late_decision_lookups_total{result="found"}' in metrics
        assert 'optisync_booking_late_decision_lookups_total{result="not_yet"}' in metrics
    assert made["http_status"] == 201, made
    assert made["body"]["booking_id"] == requested.json()["booking_id"]
    assert made["body"]["local_start"] == store.at("16:30").isoformat()
    assert changed["http_status"] == 200, changed
    assert changed["body"]["booking_id"] == booked.json()["booking_id"]
    assert changed["body"]["status"] == "cancelled"


async def test_a_202s_status_url_outlives_a_redis_loss(
    booking_settings, resources, projector, store, decider, clock
):
    """Redis keeps no copy on disk: a command's pending status lost with it comes back from
    the lookup kept in MongoDB, before and after its decision; an unknown command stays 404."""
    quick = booking_settings.model_copy(update={
        "decision_timeout_s": 0.3, "late_decision_after_s": 0.0, "late_decision_every_s": 0.2,
    })  # fmt: skip
    seen_before = len(decider.seen)
    decider.silent = True
    async with api_client(quick, clock) as first:
        requested = await book(first, store, hhmm="17:00")
    assert requested.status_code == 202, requested.text
    correlation_id = requested.json()["correlation_id"]
    status_url = requested.json()["status_url"]

    async def command_seen() -> Any:
        return decider.seen[seen_before] if len(decider.seen) > seen_before else None

    command = await eventually(command_seen)
    status_key = f"{quick.redis_prefix}cmd:{correlation_id}"

    async def lose_redis_status() -> None:
        assert await resources.redis.delete(status_key, f"{status_key}:lookup") >= 1

    async def read_done(api: httpx.AsyncClient) -> dict[str, Any] | None:
        got = (await api.get(status_url)).json()
        return got if got["status"] == "done" else None

    await lose_redis_status()
    async with api_client(quick, clock) as second:
        assert (await second.get(status_url)).json() == {"status": "pending"}
        assert await resources.redis.ttl(status_key) > quick.idempotency_ttl_s - 60
        unknown = await second.get(f"/v1/commands/{uuid.uuid4().hex}")
        assert unknown.status_code == 404, unknown.text
        assert unknown.json()["code"] == "unknown_command"
        decider.silent = False
        reply = decider.decide(command)
        assert reply is not None
        await decider.answer(command, reply)
        made = await eventually(lambda: read_done(second))
        await lose_redis_status()  # the outcome too: found again in the topic
        again = await eventually(lambda: read_done(second))
    assert made["http_status"] == again["http_status"] == 201, (made, again)
    assert made["body"]["booking_id"] == again["body"]["booking_id"]
    assert made["body"]["booking_id"] == requested.json()["booking_id"]


async def test_a_202d_waitlist_join_and_leave_get_their_outcomes_after_the_api_is_gone(
    booking_settings, projector, store, decider, clock
):
    """The waitlist's commands too: their decisions, found in the topic by a later API."""
    quick = booking_settings.model_copy(update={
        "decision_timeout_s": 0.3, "late_decision_after_s": 0.0, "late_decision_every_s": 0.2,
    })  # fmt: skip
    decider.silent = True  # this test answers the commands itself
    day = store.at("10:00").date().isoformat()
    join = {
        "store_id": store.store_id, "exam_type": "std", "channel": "web",
        "customer": {"customer_ref": f"wl-{store.store_id}", "name": "Wu", "locale": "en"},
        "date_from": day, "date_to": day,
    }  # fmt: skip

    async def answered_late(send, answer) -> dict[str, Any]:
        seen_before = len(decider.seen)
        async with api_client(quick, clock) as first:
            accepted = await send(first)
        assert accepted.status_code == 202, accepted.text

        async def command_seen() -> Any:
            return decider.seen[seen_before] if len(decider.seen) > seen_before else None

        command = await eventually(command_seen)
        async with api_client(quick, clock) as second:
            await decider.answer(command, answer(command.payload))

            async def done() -> dict[str, Any] | None:
                got = (await second.get(accepted.json()["status_url"])).json()
                return got if got["status"] == "done" else None

            return await eventually(done)

    key = {"Idempotency-Key": uuid.uuid4().hex}
    joined = await answered_late(
        lambda api: api.post("/v1/waitlist", json=join, headers=key),
        lambda c: WaitlistJoined(**c.model_dump()),
    )
    assert joined["http_status"] == 201, joined
    entry_id = joined["body"]["waitlist_entry_id"]
    assert joined["body"]["status"] == "waiting"
    async with api_client(quick, clock) as api:

        async def projected() -> httpx.Response | None:
            got = await api.get(f"/v1/waitlist/{entry_id}")
            return got if got.status_code == 200 else None

        await eventually(projected)
    left = await answered_late(
        lambda api: api.delete(f"/v1/waitlist/{entry_id}"),
        lambda c: WaitlistLeft(waitlist_entry_id=entry_id, idempotency_key=c.idempotency_key,
                               reason="customer"),
    )  # fmt: skip
    assert left["http_status"] == 200, left
    assert (left["body"]["waitlist_entry_id"], left["body"]["status"]) == (entry_id, "left")


async def test_a_booking_through_its_life(api, store, decider):
    booking = (await book(api, store, hhmm="09:00")).json()
    url = f"/v1/bookings/{booking['booking_id']}"
    key = {"Idempotency-Key": uuid.uuid4().hex}
    problem(
        await api.post(f"{url}/cancel", json={"by": "customer"}), 400, "missing_idempotency_key"
    )
    problem(await api.post(f"{url}/reschedule", json={"slot_start": store.at("09:10").isoformat()},
                           headers=key), 422, "not_on_grid")  # fmt: skip
    moved = await api.post(
        f"{url}/reschedule", json={"slot_start": store.at("13:00").isoformat()}, headers=key
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["local_start"] == store.at("13:00").isoformat()
    assert [h["event"] for h in moved.json()["history"]] == ["confirmed", "rescheduled"]
    checked = await api.post(f"{url}/check-in", json={"staff_id": "desk-1"}, headers=key | {
        "Idempotency-Key": "c1"})  # fmt: skip
    assert (checked.status_code, checked.json()["status"]) == (200, "checked_in")
    done = await api.post(f"{url}/complete", headers={"Idempotency-Key": "c2"})
    assert (done.status_code, done.json()["status"]) == (200, "completed")
    late = await api.post(f"{url}/cancel", json={"by": "store"}, headers={"Idempotency-Key": "c3"})
    problem(late, 409, "invalid_transition")

    other = (await book(api, store, hhmm="14:00", customer="b")).json()
    no_show = await api.post(
        f"/v1/bookings/{other['booking_id']}/no-show", headers={"Idempotency-Key": "n1"}
    )
    assert (no_show.status_code, no_show.json()["status"]) == (200, "no_show"), no_show.text
    third = (await book(api, store, hhmm="16:00", customer="c")).json()
    cancelled = await api.post(
        f"/v1/bookings/{third['booking_id']}/cancel",
        json={"by": "customer", "reason": "sick"},
        headers={"Idempotency-Key": "x1"},
    )
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    assert cancelled.json()["history"][-1] | {"at": None} == {
        "event": "cancelled", "at": None, "by": "customer", "reason": "sick", "late": False,
        "slot_start": None, "optometrist_id": None, "previous_slot_start": None,
        "previous_optometrist_id": None, "cause": None, "staff_id": None,
    }  # fmt: skip
    missing = await api.post(
        "/v1/bookings/nope/cancel", json={"by": "store"}, headers={"Idempotency-Key": "x2"}
    )
    problem(missing, 404, "unknown_booking")


async def test_a_booking_past_the_processors_retention_can_no_longer_change(
    api, store, decider, clock, booking_settings
):
    booking = (await book(api, store, hhmm="10:00")).json()
    url = f"/v1/bookings/{booking['booking_id']}"
    saved = clock.now()
    days = booking_settings.processor_retain_days
    try:
        clock.set(store.at("10:00") + dt.timedelta(days=days + 2))
        late = await api.post(f"{url}/no-show", headers={"Idempotency-Key": "late-1"})
        assert f"more than {days} days ago" in problem(late, 409, "invalid_transition")["detail"]
        clock.set(store.at("10:00") + dt.timedelta(days=days - 1))  # within: still changes
        ok = await api.post(f"{url}/no-show", headers={"Idempotency-Key": "late-2"})
        assert (ok.status_code, ok.json()["status"]) == (200, "no_show"), ok.text
    finally:
        clock.set(saved)
    assert (await api.get(url)).status_code == 200  # and it is still there to read


async def test_a_manage_link_ahead_of_its_document_is_503_with_retry_after(api, booking_settings):
    """A signed link names a confirmed booking: with no document yet, the projector is behind,
    so every reader of the link hears "try again shortly", never "no such link"."""
    secret = booking_settings.signing_secret.get_secret_value().encode()
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    token = manage_token(secret, uuid.uuid4().hex, "customer-ahead", expires)
    read, page, invite = await asyncio.gather(
        api.get(f"/pages/api/manage/{token}"),
        api.get(f"/manage/{token}"),
        api.get(f"/manage/{token}/invite.ics"),
    )
    problem(read, 503, "booking_not_ready")
    problem(invite, 503, "booking_not_ready")
    assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
    assert '<meta http-equiv="refresh" content="1">' in page.text  # the browser retries alone
    assert [r.headers.get("retry-after") for r in (read, page, invite)] == ["1", "1", "1"]
    problem(await api.get(f"/pages/api/manage/x{token}"), 404, "link_invalid")


async def test_availability_is_served_from_the_redis_view(api, bus, store):
    sid = store.store_id
    view = StoreDayAvailability(
        store_id=sid, local_date=store.day, timezone=TZ, slot_minutes=15,
        exam_types={"std": ExamTypeSlots(
            duration_minutes=30, free_starts=["09:00", "09:15"], free_count=2
        )},
        computed_at=dt.datetime.now(dt.UTC), seq=3,
    )  # fmt: skip
    _, meta = await bus.publish(view, sid)
    await bus.projected(meta)
    url = f"/v1/stores/{sid}/availability"
    resp = await api.get(url, params={"date": store.day.isoformat(), "exam_type": "std"})
    assert resp.status_code == 200, resp.text
    nine = store.at("09:00")
    assert resp.json() == {
        "store_id": sid, "date": store.day.isoformat(), "timezone": TZ, "exam_type": "std",
        "duration_minutes": 30, "seq": 3,
        "slots": [
            {"local_time": "09:00", "start": nine.isoformat(), "free_count": 1,
             "start_utc": nine.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")},
            {"local_time": "09:15", "start": store.at("09:15").isoformat(), "free_count": 1,
             "start_utc": store.at("09:15").astimezone(dt.UTC).isoformat().replace("+00:00", "Z")},
        ],
    }  # fmt: skip
    # The API serves views from memory; a newer view replaces the copy as soon as it is written.
    newer = view.model_copy(update={"seq": 4, "exam_types": {"std": ExamTypeSlots(
        duration_minutes=30, free_starts=["09:15"], free_count=1, capacity=[2]
    )}})  # fmt: skip
    _, meta = await bus.publish(newer, sid)
    await bus.projected(meta)

    async def refreshed() -> dict[str, Any] | None:
        got = await api.get(url, params={"date": store.day.isoformat(), "exam_type": "std"})
        return got.json() if got.json()["seq"] == 4 else None

    body = await eventually(refreshed, within_s=2)
    assert [(s["local_time"], s["free_count"]) for s in body["slots"]] == [("09:15", 2)]

    other_day = (store.day + dt.timedelta(days=1)).isoformat()
    empty = await api.get(url, params={"date": other_day, "exam_type": "long"})
    assert (empty.status_code, empty.json()["slots"], empty.json()["duration_minutes"]) == (
        200, [], 60,
    )  # fmt: skip
    params = {"date": store.day.isoformat(), "exam_type": "std"}
    problem(
        await api.get(f"/v1/stores/nope-{sid}/availability", params=params), 404, "unknown_store"
    )
    bad_date = {"date": "2026-02-30", "exam_type": "std"}
    problem(await api.get(url, params=bad_date), 422, "invalid_request")
    unknown_exam = {"date": store.day.isoformat(), "exam_type": "lasik"}
    problem(await api.get(url, params=unknown_exam), 422, "unknown_exam_type")


async def test_fast_availability_reads_answer_exactly_what_the_route_answers(
    api, bus, store, booking_settings, clock, monkeypatch
):
    sid = store.store_id
    view = StoreDayAvailability(
        store_id=sid, local_date=store.day, timezone=TZ, slot_minutes=15,
        exam_types={"std": ExamTypeSlots(
            duration_minutes=30, free_starts=["09:00", "10:30"], free_count=2, capacity=[2, 1]
        )},
        computed_at=dt.datetime.now(dt.UTC), seq=7,
    )  # fmt: skip
    _, meta = await bus.publish(view, sid)
    await bus.projected(meta)
    answered_fast = 0
    real_render = render_availability

    def counting_render(raw: bytes, exam_type: str, now: float) -> bytes | None:
        nonlocal answered_fast
        body = real_render(raw, exam_type, now)
        answered_fast += body is not None
        return body

    monkeypatch.setattr("services.booking.api.fast_reads.render_availability", counting_render)
    day, url = store.day.isoformat(), f"/v1/stores/{sid}/availability"
    cases: list[tuple[str, Any]] = [
        (url, {"date": day, "exam_type": "std"}),
        (url, {"date": day, "exam_type": "std", "channel": "wechat", "utm": "x"}),
        (url, {"date": day, "exam_type": "std", "channel": "fax"}),
        (url, {"date": day, "exam_type": "lasik"}),
        (url, {"date": day}),
        (url, {"date": "2026-02-30", "exam_type": "std"}),
        (url, {"date": day.replace("-", ""), "exam_type": "std"}),
        (url, [("date", day), ("exam_type", "std"), ("exam_type", "std")]),
        (url, {"date": (store.day + dt.timedelta(days=1)).isoformat(), "exam_type": "std"}),
        (f"/v1/stores/nope-{sid}/availability", {"date": day, "exam_type": "std"}),
    ]
    async with api_client(booking_settings, clock, fast_paths=False) as routed:
        for path, params in cases:
            await api.get(path, params=params)  # a first read fills the in-memory copy
            fast = await api.get(path, params=params)
            slow = await routed.get(path, params=params)
            assert (fast.status_code, fast.headers, fast.content) == (
                slow.status_code, slow.headers, slow.content,
            ), params  # fmt: skip
    # The well-formed reads of the view, less the very first one (a cache miss: the route
    # answered and filled the copy).
    assert answered_fast == 3


async def test_the_fast_booking_path_answers_what_the_route_answers(
    api, store, decider, booking_settings, clock, monkeypatch
):
    taken = 0

    async def counting_prepare(*args: Any) -> Any:
        nonlocal taken
        prepared = await prepare_booking(*args)
        taken += 1
        return prepared

    monkeypatch.setattr("services.booking.api.fast_bookings.prepare_booking", counting_prepare)
    body, json_type = booking_body(store), {"content-type": "application/json"}
    refused: list[tuple[Any, list[tuple[str, str]]]] = [
        (booking_body(store), []),  # no idempotency key
        (booking_body(store) | {"store_id": f"nope-{store.store_id}"}, [("Idempotency-Key", "a")]),
        (booking_body(store, hhmm="10:10"), [("Idempotency-Key", "b")]),
        (booking_body(store) | {"channel": "fax"}, [("Idempotency-Key", "c")]),
        (body, [("Idempotency-Key", "")]),
        (body, [("Idempotency-Key", "k" * 257)]),
        (b'{"store_id": ', [("Idempotency-Key", "f"), *json_type.items()]),
        (b"[]", [("Idempotency-Key", "g"), *json_type.items()]),
        (json.dumps(body).encode(), [("Idempotency-Key", "h"), ("content-type", "text/plain")]),
    ]
    async with api_client(booking_settings, clock, fast_paths=False) as routed:
        for content, headers in refused:
            request: dict[str, Any] = (
                {"content": content} if isinstance(content, bytes) else {"json": content}
            )
            fast = await api.post("/v1/bookings", headers=headers, **request)
            slow = await routed.post("/v1/bookings", headers=headers, **request)
            assert fast.status_code >= 400, (headers, fast.text)
            assert (fast.status_code, fast.headers, fast.content) == (
                slow.status_code, slow.headers, slow.content,
            ), headers  # fmt: skip
        assert (taken, decider.seen) == (0, [])  # the route refused each; nothing was produced

        # A repeated key is the route's to judge: several are refused, and nothing produced.
        repeated = [("Idempotency-Key", "d"), ("Idempotency-Key", "e")]
        twice = booking_body(store, hhmm="11:00")
        fast = await api.post("/v1/bookings", json=twice, headers=repeated)
        slow = await routed.post("/v1/bookings", json=twice, headers=repeated)
        assert (fast.status_code, slow.status_code, taken) == (400, 400, 0), fast.text
        assert fast.content == slow.content and decider.seen == []
        assert fast.json()["code"] == "duplicate_idempotency_key"

        # Well-formed requests are taken here; both paths book with the same meaning.
        charset = {"content-type": "application/json; charset=utf-8", "Idempotency-Key": "one"}
        first = await api.post("/v1/bookings", content=json.dumps(body), headers=charset)
        other = await routed.post(
            "/v1/bookings",
            json=booking_body(store, hhmm="10:30"),
            headers={"Idempotency-Key": "two"},
        )
        assert (first.status_code, other.status_code, taken) == (201, 201, 1), first.text
        assert first.headers.keys() == other.headers.keys()
        assert first.json().keys() == other.json().keys()
        by_route = await routed.post("/v1/bookings", json=body, headers={"Idempotency-Key": "one"})
        assert (by_route.status_code, by_route.json()["booking_id"]) == (
            201, first.json()["booking_id"],
        )  # fmt: skip
        again = await book(api, store, key="two", hhmm="10:30")
        assert (again.status_code, again.json()["booking_id"], taken) == (
            201, other.json()["booking_id"], 2,
        )  # fmt: skip


async def test_customer_and_store_lists_are_cursor_paginated(api, store, decider):
    ids = []
    for hhmm in ("11:30", "09:30", "10:30"):
        resp = await book(api, store, hhmm=hhmm, customer="pager")
        assert resp.status_code == 201, resp.text
        ids.append(resp.json()["booking_id"])
    expected = [ids[1], ids[2], ids[0]]  # by start time
    url = f"/v1/customers/pager-{store.store_id}/bookings"

    async def all_projected() -> dict[str, Any] | None:
        page = (await api.get(url, params={"limit": 2})).json()
        return page if page["next_cursor"] else None

    first = await eventually(all_projected)
    assert [b["booking_id"] for b in first["items"]] == expected[:2]
    second = (await api.get(url, params={"limit": 2, "cursor": first["next_cursor"]})).json()
    assert ([b["booking_id"] for b in second["items"]], second["next_cursor"]) == (
        expected[2:], None,
    )  # fmt: skip

    day = {"date": store.day.isoformat()}
    store_url = f"/v1/stores/{store.store_id}/bookings"
    listed = (await api.get(store_url, params=day)).json()
    assert [b["booking_id"] for b in listed["items"]] == expected
    cancelled = await api.get(store_url, params=day | {"status": "cancelled"})
    assert cancelled.json() == {"items": [], "next_cursor": None}
    next_day = {"date": (store.day + dt.timedelta(days=1)).isoformat()}
    assert (await api.get(store_url, params=next_day)).json()["items"] == []
    problem(await api.get(url, params={"cursor": "garbage"}), 400, "invalid_cursor")
    problem(await api.get(url, params={"limit": 0}), 422, "invalid_request")
    problem(await api.get(url, params={"limit": 201}), 422, "invalid_request")
