"""Roster changes through the real roster API reach booking: published shifts become exactly
the bookable slots, leave re-homes bookings (reassigned or displaced, one event each), a roster
change racing a booking storm loses nothing, and local times are right across time zones/DST."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from aiokafka import TopicPartition

from optisync_common.kafka import make_consumer
from optisync_common.settings import ServiceSettings
from schemas.events.booking import BookingDisplaced, BookingReassigned
from schemas.registry import BOOKING_EVENTS, topic
from schemas.serde import decode

pytestmark = pytest.mark.e2e

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EXAM = "rf-std45"  # chain-wide codes of this file (defined identically by every test)
EXAM30 = "rf-std30"
CONTACT = "rf-contact30"
EXAMS = {
    EXAM: (45, "general"),
    EXAM30: (30, "general"),
    CONTACT: (30, "contact"),
}
TIMEOUT = 45.0  # generous: the machine is slow and shared


# ----------------------------------------------------------------------------- helpers


def eventually(probe: Callable[[], Any], done: Callable[[Any], bool], what: str) -> Any:
    """Poll `probe` until `done(value)`; fail with the last value."""
    deadline = time.monotonic() + TIMEOUT
    value = None
    while time.monotonic() < deadline:
        value = probe()
        if done(value):
            return value
        time.sleep(0.25)
    raise AssertionError(f"{what} never happened; last value: {value}")


def ok(resp: httpx.Response, *codes: int) -> dict[str, Any]:
    assert resp.status_code in (codes or (200, 201)), f"{resp.status_code} {resp.text}"
    body: dict[str, Any] = resp.json()
    return body


def hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def mins(text: str) -> int:
    return int(text[:2]) * 60 + int(text[3:5])


class Chain:
    """A store set up through the roster API, and the booking API to read it back."""

    def __init__(self, urls: dict[str, str], store_id: str) -> None:
        self.roster = httpx.Client(base_url=urls["roster-api"], timeout=60)
        self.booking = httpx.Client(base_url=urls["booking-api"], timeout=60)
        self.store_id = store_id

    def close(self) -> None:
        self.roster.close()
        self.booking.close()

    def register(
        self, tz: str, hours: dict[str, tuple[str, str]], optometrists: dict[str, list[str]]
    ) -> None:
        for code, (duration, skill) in EXAMS.items():
            body = {"name": code, "duration_minutes": duration, "required_skill": skill}
            assert ok(self.roster.put(f"/v1/exam-types/{code}", json=body))["status"] == "published"
        store = {
            "name": self.store_id,
            "region": "eu",
            "timezone": tz,
            "slot_minutes": 15,
            "opening_hours": {d: [{"open": o, "close": c}] for d, (o, c) in hours.items()},
        }
        ok(self.roster.put(f"/v1/stores/{self.store_id}", json=store))
        for opt, skills in optometrists.items():
            body = {
                "name": opt,
                "skills": skills,
                "home_store_id": self.store_id,
                "store_ids": [self.store_id],
            }
            ok(self.roster.put(f"/v1/optometrists/{opt}", json=body))

    def draft(self, opt: str, day: dt.date, start: str, end: str, breaks=()) -> str:
        body = {
            "shift_id": f"{self.store_id}-{opt}-{day.isoformat()}",
            "optometrist_id": opt,
            "store_id": self.store_id,
            "date": day.isoformat(),
            "start": start,
            "end": end,
            "breaks": [{"start": s, "end": e} for s, e in breaks],
        }
        return str(ok(self.roster.post("/v1/shifts", json=body), 201)["shift_id"])

    def publish_week(self, week_start: dt.date) -> None:
        url = f"/v1/stores/{self.store_id}/roster/publish"
        published = ok(self.roster.post(url, json={"week_start": week_start.isoformat()}))
        assert published["status"] == "published", published

    def availability(self, day: dt.date, exam: str) -> dict[str, Any]:
        resp = self.booking.get(
            f"/v1/stores/{self.store_id}/availability",
            params={"date": day.isoformat(), "exam_type": exam},
        )
        return resp.json() if resp.status_code == 200 else {"slots": [], "error": resp.text}

    def free(self, day: dt.date, exam: str) -> dict[str, int]:
        return {s["local_time"]: s["free_count"] for s in self.availability(day, exam)["slots"]}

    def book(self, key: str, local_start: dt.datetime, exam: str, opt: str | None = None) -> dict:
        body = {
            "store_id": self.store_id,
            "exam_type": exam,
            "slot_start": local_start.isoformat(),
            "optometrist_id": opt,
            "channel": "web",
            "customer": {"customer_ref": f"c-{key}", "name": key, "locale": "en"},
        }
        headers = {"Idempotency-Key": f"{self.store_id}-{key}"}
        return ok(self.booking.post("/v1/bookings", json=body, headers=headers), 201)

    def get_booking(self, booking_id: str) -> dict[str, Any]:
        return ok(self.booking.get(f"/v1/bookings/{booking_id}"))

    def listing(self, day: dt.date) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, str | int] = {"date": day.isoformat(), "limit": 200}
            if cursor:
                params["cursor"] = cursor
            page = ok(self.booking.get(f"/v1/stores/{self.store_id}/bookings", params=params))
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items


@pytest.fixture
def chain(running_stack, unique_id):
    chains: list[Chain] = []

    def make(prefix: str) -> Chain:
        chains.append(Chain(running_stack, f"{prefix}-{unique_id}"))
        return chains[-1]

    yield make
    for c in chains:
        c.close()


def expected_starts(
    opening: tuple[str, str] | None,
    shifts: list[tuple[str, str, list[tuple[str, str]]]],
    duration: int,
    grid: int = 15,
) -> dict[str, int]:
    """Independent model: local grid starts inside opening hours where the exam fits in a
    shift minus its breaks (and inside opening hours); value = how many optometrists."""
    if opening is None:
        return {}
    open_, close = mins(opening[0]), mins(opening[1])
    counts: Counter[str] = Counter()
    for start, end, breaks in shifts:
        worked = set(range(max(mins(start), open_), min(mins(end), close)))
        for b_start, b_end in breaks:
            worked -= set(range(mins(b_start), mins(b_end)))
        first = -(-open_ // grid) * grid
        for minute in range(first, close, grid):
            if all(m in worked for m in range(minute, minute + duration)):
                counts[hhmm(minute)] += 1
    return dict(counts)


def overlapping(bookings: list[dict[str, Any]]) -> list[tuple[str, str]]:
    by_opt: dict[str, list[dict[str, Any]]] = {}
    for b in bookings:
        if b["status"] == "confirmed":
            by_opt.setdefault(b["optometrist_id"], []).append(b)
    clashes = []
    for entries in by_opt.values():
        entries.sort(key=lambda b: b["slot_start"])
        for a, b in itertools.pairwise(entries):
            if utc(b["slot_start"]) < utc(a["slot_end"]):
                clashes.append((a["booking_id"], b["booking_id"]))
    return clashes


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)


# ----------------------------------------------------------------------------- 1. a week


def test_publishing_a_week_makes_exactly_those_slots_bookable(chain):
    store = chain("rfweek")
    week = dt.date(2030, 9, 2)
    assert week.weekday() == 0
    hours = {d: ("08:00", "18:00") for d in WEEKDAYS[:5]} | {"sat": ("09:00", "13:00")}
    ann, bob = f"ann-{store.store_id}", f"bob-{store.store_id}"
    store.register("Europe/Berlin", hours, {ann: ["general"], bob: ["general"]})
    # weekday index -> shifts (optometrist, start, end, breaks); wednesday and sunday: none
    plan: dict[int, list[tuple[str, str, str, list[tuple[str, str]]]]] = {
        0: [(ann, "08:00", "12:00", [("10:00", "10:30")]), (bob, "11:00", "15:00", [])],
        1: [(ann, "08:00", "18:00", [("12:00", "12:45"), ("15:00", "15:15")])],
        3: [(ann, "13:10", "17:00", [])],  # off-grid start: first start 13:15
        4: [(ann, "09:00", "11:00", []), (bob, "09:30", "12:00", [("10:15", "10:30")])],
        5: [(bob, "09:00", "13:00", [])],
    }
    for offset, shifts in plan.items():
        for opt, start, end, breaks in shifts:
            store.draft(opt, week + dt.timedelta(days=offset), start, end, breaks)
    # drafts emit nothing: the week is not bookable before it is published
    assert store.free(week, EXAM) == {}
    store.publish_week(week)

    expected = {}
    for offset in range(7):
        day = week + dt.timedelta(days=offset)
        worked = [(s, e, b) for _, s, e, b in plan.get(offset, [])]
        expected[day] = expected_starts(hours.get(WEEKDAYS[offset]), worked, 45)
    assert expected[week + dt.timedelta(days=2)] == {}  # wednesday: no shift
    monday = expected[week]  # sanity of the model: both fit at 11:15, only bob at 11:30,
    assert (monday["11:15"], monday["11:30"]) == (2, 1)  # nobody across ann's break
    assert "09:30" not in monday and "10:00" not in monday

    def views() -> dict[dt.date, dict[str, int]]:
        return {day: store.free(day, EXAM) for day in expected}

    seen = eventually(views, lambda v: v == expected, "availability == roster")
    assert seen == expected
    # a start the shifts do not allow is refused by the booking API
    thu = week + dt.timedelta(days=3)
    off = dt.datetime.combine(thu, dt.time(13, 0), tzinfo=ZoneInfo("Europe/Berlin"))
    resp = store.booking.post(
        "/v1/bookings",
        json={
            "store_id": store.store_id,
            "exam_type": EXAM,
            "slot_start": off.isoformat(),
            "channel": "web",
            "customer": {"customer_ref": "c-off", "name": "x", "locale": "en"},
        },
        headers={"Idempotency-Key": f"{store.store_id}-off"},
    )
    assert resp.status_code == 409, resp.text


# ----------------------------------------------------------------------------- 2. leave

BERLIN = ZoneInfo("Europe/Berlin")
ALL_WEEK = {d: ("08:00", "20:00") for d in WEEKDAYS}


def at(day: dt.date, local: str, tz: ZoneInfo = BERLIN) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.fromisoformat(local), tzinfo=tz)


async def _rehome_events(
    settings: ServiceSettings, store_id: str, change: Callable[[], Any], affected: set[str]
) -> list[Any]:
    """Every BookingReassigned/BookingDisplaced of the store published after `change()`, read
    committed; keeps reading a few seconds after the last expected one to catch duplicates."""
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(BOOKING_EVENTS, p) for p in range(topic(BOOKING_EVENTS).partitions)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_end()
        for tp in partitions:
            await consumer.position(tp)  # resolve the end now, before the change happens
        await asyncio.to_thread(change)
        found: list[Any] = []
        deadline = time.monotonic() + 2 * TIMEOUT
        quiet_until: float | None = None
        while time.monotonic() < deadline and (
            quiet_until is None or time.monotonic() < quiet_until
        ):
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    event = decode(record.value, record.headers)
                    if event.store_id == store_id and isinstance(
                        event.payload, BookingReassigned | BookingDisplaced
                    ):
                        found.append(event.payload)
            if quiet_until is None and affected <= {p.booking_id for p in found}:
                quiet_until = time.monotonic() + 3.0
        return found
    finally:
        await consumer.stop()


def test_leave_reassigns_who_can_be_covered_and_displaces_the_rest(chain, endpoints):
    store = chain("rfleave")
    day = dt.date(2030, 6, 4)
    ann, bob, cid = (f"{n}-{store.store_id}" for n in ("ann", "bob", "cid"))
    store.register(
        "Europe/Berlin", ALL_WEEK, {ann: ["general", "contact"], bob: ["general"], cid: ["general"]}
    )
    store.draft(ann, day, "09:00", "17:00")
    store.draft(bob, day, "09:00", "12:00")
    store.draft(cid, day, "13:00", "14:00")
    store.publish_week(day)
    eventually(
        lambda: store.free(day, EXAM30),
        lambda f: f.get("09:00") == 2 and f.get("13:00") == 2,
        "shifts in the view",
    )

    bob_own = store.book("bob-own", at(day, "10:00"), EXAM30, bob)["booking_id"]
    on_ann = {
        "09:00": store.book("a0900", at(day, "09:00"), EXAM30, ann),  # bob is free -> bob
        "10:00": store.book("a1000", at(day, "10:00"), EXAM30, ann),  # bob busy -> displaced
        "11:00": store.book("a1100", at(day, "11:00"), CONTACT, ann),  # bob lacks the skill
        "13:00": store.book("a1300", at(day, "13:00"), EXAM30, ann),  # cid on shift -> cid
        "15:00": store.book("a1500", at(day, "15:00"), EXAM30, ann),  # nobody on shift
    }
    ids = {t: b["booking_id"] for t, b in on_ann.items()}
    assert all(b["optometrist_id"] == ann for b in on_ann.values())

    def grant_leave() -> None:
        body = {"start_date": day.isoformat(), "end_date": day.isoformat(), "kind": "leave"}
        assert (
            ok(store.roster.post(f"/v1/optometrists/{ann}/leave", json=body))["status"]
            == "published"
        )

    settings = endpoints.settings(ServiceSettings, service_name="e2e-roster", environment="test")
    events = asyncio.run(_rehome_events(settings, store.store_id, grant_leave, set(ids.values())))

    def states() -> dict[str, dict[str, Any]]:
        return {t: store.get_booking(i) for t, i in ids.items()}

    final = eventually(
        states,
        lambda s: all(b["optometrist_id"] != ann or b["status"] != "confirmed" for b in s.values()),
        "bookings re-homed in MongoDB",
    )
    summary = {t: (b["status"], b["optometrist_id"]) for t, b in final.items()}
    assert summary == {
        "09:00": ("confirmed", bob),
        "10:00": ("displaced", ann),
        "11:00": ("displaced", ann),
        "13:00": ("confirmed", cid),
        "15:00": ("displaced", ann),
    }
    assert all(utc(final[t]["slot_start"]) == at(day, t) for t in final), "times kept"
    assert store.get_booking(bob_own)["status"] == "confirmed"

    per_booking = Counter(e.booking_id for e in events)
    assert per_booking == Counter(ids.values()), "exactly one outcome per affected booking"
    kinds = {e.booking_id: type(e).__name__ for e in events}
    assert kinds == {
        ids["09:00"]: "BookingReassigned",
        ids["10:00"]: "BookingDisplaced",
        ids["11:00"]: "BookingDisplaced",
        ids["13:00"]: "BookingReassigned",
        ids["15:00"]: "BookingDisplaced",
    }
    moves = {e.booking_id: e.to_optometrist_id for e in events if isinstance(e, BookingReassigned)}
    assert moves == {ids["09:00"]: bob, ids["13:00"]: cid}
    assert all(len(e.alternatives) <= 3 for e in events if isinstance(e, BookingDisplaced))
    assert overlapping(store.listing(day)) == []

    # the roster's own day view (fed by booking.events.v1) agrees: who sees whom that day
    def day_views() -> dict[str, tuple[Any, set[str]]]:
        views = {
            o: ok(store.roster.get(f"/v1/optometrists/{o}/schedule", params={"date": str(day)}))
            for o in (ann, bob, cid)
        }
        return {o: (v["on_leave"] is not None, {b["booking_id"] for b in v["bookings"]})
                for o, v in views.items()}  # fmt: skip

    expected_views = {
        ann: (True, set()),
        bob: (False, {bob_own, ids["09:00"]}),
        cid: (False, {ids["13:00"]}),
    }
    eventually(day_views, lambda v: v == expected_views, "roster day views re-homed")


# ----------------------------------------------------------------------------- 3. race


def _race_request(store_id: str, day: dt.date, i: int, n: int, ann: str) -> dict[str, Any]:
    """Even requests ask for ann all day on the half-hour grid; odd ones for anybody in the
    afternoon. So only ann is booked in the morning: bob and cid can take those over then.
    Starts advance with i, so requests sent after the leave still ask for ann's later slots."""
    if i % 2 == 0:
        start, who = at(day, "09:00") + dt.timedelta(minutes=30 * (i * 16 // n)), ann
    else:
        start, who = at(day, "13:00") + dt.timedelta(minutes=30 * (i * 8 // n)), None
    return {
        "store_id": store_id,
        "exam_type": EXAM30,
        "slot_start": start.isoformat(),
        "optometrist_id": who,
        "channel": "web",
        "customer": {"customer_ref": f"race-{i}", "name": f"C{i}", "locale": "en"},
    }


RosterChange = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


async def _storm_and_change(
    store_id: str, urls: dict[str, str], day: dt.date, n: int, ann: str, change: RosterChange
) -> tuple[list[tuple[int, dict[str, Any]]], httpx.Response]:
    """n booking requests for the day while the roster takes ann off that day, sent as soon as
    ann has a confirmed booking (so the change lands mid-storm, with work to do)."""
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    ann_booked = asyncio.Event()
    in_flight = asyncio.Semaphore(50)  # 50 at a time: the storm outlasts the roster change
    async with (
        httpx.AsyncClient(base_url=urls["booking-api"], timeout=120, limits=limits) as booking,
        httpx.AsyncClient(base_url=urls["roster-api"], timeout=120) as roster,
    ):

        async def one(i: int) -> tuple[int, dict[str, Any]]:
            async with in_flight:
                resp = await _resend(
                    lambda: booking.post(
                        "/v1/bookings",
                        json=_race_request(store_id, day, i, n, ann),
                        headers={"Idempotency-Key": f"{store_id}-r{i}"},
                    )
                )
            status, answer = resp.status_code, resp.json()
            if status == 202:  # decided after the sync deadline: follow the status URL
                status, answer = await _final(booking, answer["status_url"])
            if status == 201 and answer["optometrist_id"] == ann:
                ann_booked.set()
            return status, answer

        async def roster_change() -> httpx.Response:
            await ann_booked.wait()
            return await change(roster)

        results, changed = await asyncio.gather(
            asyncio.gather(*(one(i) for i in range(n))), roster_change()
        )
        return list(results), changed


async def _resend(send: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
    """Send again when a pooled keep-alive connection was dropped under us (a client-side
    race of HTTP/1.1): safe, the booking POST carries an Idempotency-Key."""
    for _ in range(2):
        try:
            return await send()
        except (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError):
            await asyncio.sleep(0.2)
    return await send()


async def _final(client: httpx.AsyncClient, status_url: str) -> tuple[int, dict[str, Any]]:
    deadline = time.monotonic() + 2 * TIMEOUT
    while time.monotonic() < deadline:
        state = (await _resend(lambda: client.get(status_url))).json()
        if state["status"] == "done":
            return state["http_status"], state["body"]
        await asyncio.sleep(0.2)
    raise AssertionError(f"{status_url} never completed")


@pytest.mark.parametrize("change", ["leave", "cancel_shift"])
def test_roster_change_racing_200_bookings_loses_nothing(chain, running_stack, change):
    store = chain("rfrace")
    day = dt.date(2030, 6, 5)
    ann, bob, cid = (f"{n}-{store.store_id}" for n in ("ann", "bob", "cid"))
    store.register("Europe/Berlin", ALL_WEEK, {o: ["general"] for o in (ann, bob, cid)})
    ann_shift = store.draft(ann, day, "09:00", "17:00")
    for opt in (bob, cid):
        store.draft(opt, day, "09:00", "17:00")
    store.publish_week(day)
    eventually(lambda: store.free(day, EXAM30), lambda f: f.get("16:30") == 3, "shifts in view")

    async def grant_leave(roster: httpx.AsyncClient) -> httpx.Response:
        body = {"start_date": day.isoformat(), "end_date": day.isoformat()}
        return await roster.post(f"/v1/optometrists/{ann}/leave", json=body)

    async def cancel_shift(roster: httpx.AsyncClient) -> httpx.Response:
        ok(await roster.delete(f"/v1/shifts/{ann_shift}"))  # drafts the cancellation
        return await roster.post(f"/v1/shifts/{ann_shift}/publish")  # ShiftCancelled

    act = grant_leave if change == "leave" else cancel_shift
    results, changed = asyncio.run(
        _storm_and_change(store.store_id, running_stack, day, 200, ann, act)
    )

    assert ok(changed)["status"] == "published", changed.text
    statuses = Counter(status for status, _ in results)
    assert set(statuses) <= {201, 409}, statuses  # every request got a final decision
    assert sum(statuses.values()) == 200
    winners = {b["booking_id"] for status, b in results if status == 201}
    on_ann = {b["booking_id"]: b for s, b in results if s == 201 and b["optometrist_id"] == ann}
    assert on_ann, statuses  # the leave waited for one

    refusals = Counter(b.get("code") for s, b in results if s == 409)
    assert set(refusals) <= {"slot_taken", "no_shift"}, refusals

    def settled(items: list[dict[str, Any]]) -> bool:
        return {b["booking_id"] for b in items} >= winners and not any(
            b["optometrist_id"] == ann and b["status"] == "confirmed" for b in items
        )

    items = eventually(lambda: store.listing(day), settled, "every winner re-homed or kept")
    assert {b["booking_id"] for b in items} == winners, "a booking nobody was answered with"
    now = Counter(b["status"] for b in items)
    assert set(now) <= {"confirmed", "displaced"}, now
    assert now["confirmed"] + now["displaced"] == len(winners), "a confirmed booking was lost"
    by_id = {b["booking_id"]: b for b in items}
    assert all(b["optometrist_id"] == ann for b in items if b["status"] == "displaced")
    # nobody else was booked before 13:00: ann's morning bookings all fit with bob or cid
    morning = [i for i, b in on_ann.items() if utc(b["slot_start"]) < at(day, "13:00")]
    assert all(by_id[i]["status"] == "confirmed" for i in morning), [by_id[i] for i in morning]
    assert all(by_id[i]["slot_start"] == on_ann[i]["slot_start"] for i in on_ann), "time kept"
    print(f"race: {refusals}, {len(on_ann)} on ann ({len(morning)} morning), now {now}")
    # on the roster: ann is off all day (leave or no shift), bob and cid work 09:00-17:00;
    # the roster API's day view (working = shifts minus breaks, leave, training) says the same
    working = {
        o: [
            (utc(w["start_utc"]), utc(w["end_utc"]))
            for shift in ok(
                store.roster.get(f"/v1/optometrists/{o}/schedule", params={"date": str(day)})
            )["shifts"]
            for w in shift["working"]
        ]
        for o in (ann, bob, cid)
    }
    nine_to_five = [(at(day, "09:00"), at(day, "17:00"))]
    assert working == {ann: [], bob: nine_to_five, cid: nine_to_five}
    for b in items:
        if b["status"] == "confirmed":
            windows = working[b["optometrist_id"]]
            start, end = utc(b["slot_start"]), utc(b["slot_end"])
            assert any(s <= start and end <= e for s, e in windows), f"off shift: {b}"
    assert overlapping(items) == []
    # and the availability view no longer counts ann anywhere
    eventually(
        lambda: store.free(day, EXAM30),
        lambda f: all(c <= 2 for c in f.values()),
        "ann out of the view",
    )


# ----------------------------------------------------------------------------- 4. time zones


def test_local_times_are_right_across_time_zones_and_dst(chain):
    dst_day, day_before = dt.date(2030, 3, 31), dt.date(2030, 3, 30)
    shanghai = ZoneInfo("Asia/Shanghai")
    # DST starts in Berlin on 2030-03-31 (02:00 CET -> 03:00 CEST)
    assert at(day_before, "12:00").utcoffset() == dt.timedelta(hours=1)
    assert at(dst_day, "01:00").utcoffset() == dt.timedelta(hours=1)
    assert at(dst_day, "09:00").utcoffset() == dt.timedelta(hours=2)
    berlin, china = chain("rftzb"), chain("rftzs")
    b_opt, s_opt = f"ann-{berlin.store_id}", f"li-{china.store_id}"
    berlin.register("Europe/Berlin", ALL_WEEK, {b_opt: ["general"]})
    china.register("Asia/Shanghai", ALL_WEEK, {s_opt: ["general"]})
    for day in (day_before, dst_day):
        berlin.draft(b_opt, day, "08:00", "12:00")
    china.draft(s_opt, dst_day, "08:00", "12:00")
    berlin.publish_week(day_before)
    china.publish_week(day_before)

    local_starts = [hhmm(m) for m in range(8 * 60, 11 * 60 + 31, 15)]
    assert local_starts[0] == "08:00" and local_starts[-1] == "11:30"
    cases = [(berlin, day_before, BERLIN), (berlin, dst_day, BERLIN), (china, dst_day, shanghai)]
    for store, day, tz in cases:
        view = eventually(
            functools.partial(store.availability, day, EXAM30),
            lambda v: [s["local_time"] for s in v["slots"]] == local_starts,
            f"{store.store_id} {day} view",
        )
        for slot in view["slots"]:
            expected = at(day, slot["local_time"], tz)
            assert utc(slot["start_utc"]) == expected, slot
            assert dt.datetime.fromisoformat(slot["start"]) == expected, slot
    firsts = {
        (s.store_id, d): s.availability(d, EXAM30)["slots"][0]["start_utc"] for s, d, _ in cases
    }
    assert firsts == {
        (berlin.store_id, day_before): "2030-03-30T07:00:00Z",
        (berlin.store_id, dst_day): "2030-03-31T06:00:00Z",
        (china.store_id, dst_day): "2030-03-31T00:00:00Z",
    }

    on_dst = berlin.book("dst", at(dst_day, "09:00"), EXAM30)
    before = berlin.book("cet", at(day_before, "09:00"), EXAM30)
    in_china = china.book("cn", at(dst_day, "09:00", shanghai), EXAM30)
    for booking, utc_start, local in (
        (on_dst, "2030-03-31T07:00:00Z", "2030-03-31T09:00:00+02:00"),
        (before, "2030-03-30T08:00:00Z", "2030-03-30T09:00:00+01:00"),
        (in_china, "2030-03-31T01:00:00Z", "2030-03-31T09:00:00+08:00"),
    ):
        stored = eventually(
            functools.partial(berlin.booking.get, f"/v1/bookings/{booking['booking_id']}"),
            lambda r: r.status_code == 200,
            "booking in MongoDB",
        ).json()
        for answer in (booking, stored):
            assert utc(answer["slot_start"]) == utc(utc_start), answer
            assert answer["slot_start"].replace("+00:00", "Z") == utc_start, answer
            assert dt.datetime.fromisoformat(answer["local_start"]).isoformat() == local, answer
