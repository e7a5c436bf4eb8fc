"""Roster API -> MongoDB -> roster.events.v1, read back from the real broker."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from optisync_common.clock import FixedClock
from tests.integration.roster.conftest import NOW, RosterTap, eventually

WEEK = dt.date(2026, 3, 23)  # Monday; Sunday 29 March is Berlin's spring-forward day
BERLIN_HOURS = {
    **{d: [{"open": "08:00", "close": "20:00"}] for d in ("mon", "tue", "wed", "thu", "fri")},
    "sat": [{"open": "09:00", "close": "14:00"}],
    "sun": [{"open": "10:00", "close": "16:00"}],
}
SHANGHAI_HOURS = {d: [{"open": "09:00", "close": "21:00"}] for d in BERLIN_HOURS}


@dataclass
class Chain:
    berlin: str
    shanghai: str
    o1: str  # Berlin only
    o2: str  # Berlin and Shanghai
    setup: dict[str, list[str]] = field(default_factory=dict)  # store -> event types

    def mark(self, store_id: str) -> int:
        """How many events the store's key carried once the chain was set up."""
        return len(self.setup[store_id])


async def ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text
    return resp.json()


async def make_chain(roster: httpx.AsyncClient, tap: RosterTap, uid: str) -> Chain:
    chain = Chain(f"ber-{uid}", f"sha-{uid}", f"o1-{uid}", f"o2-{uid}")
    await ok(await roster.put(f"/v1/stores/{chain.berlin}", json={
        "name": "Berlin Mitte", "region": "eu", "timezone": "Europe/Berlin",
        "opening_hours": BERLIN_HOURS, "locale": "en",
    }))  # fmt: skip
    await ok(await roster.put(f"/v1/stores/{chain.shanghai}", json={
        "name": "Shanghai Jing'an", "region": "cn", "timezone": "Asia/Shanghai",
        "opening_hours": SHANGHAI_HOURS, "locale": "zh-CN",
    }))  # fmt: skip
    await ok(await roster.put(f"/v1/optometrists/{chain.o1}", json={
        "name": "Anna", "skills": ["general"], "home_store_id": chain.berlin,
        "store_ids": [chain.berlin],
    }))  # fmt: skip
    await ok(await roster.put(f"/v1/optometrists/{chain.o2}", json={
        "name": "Li", "skills": ["general", "pediatric"], "home_store_id": chain.berlin,
        "store_ids": [chain.berlin, chain.shanghai],
    }))  # fmt: skip
    for store_id in (chain.berlin, chain.shanghai):  # wait until o2 joined there

        async def joined(store_id: str = store_id) -> bool:
            return any(
                e.type == "OptometristJoined" and e.payload.optometrist_id == chain.o2
                for e in tap.by_key[store_id]
            )

        await eventually(joined)
        chain.setup[store_id] = [e.type for e in tap.by_key[store_id]]
    return chain


def utc(day: dt.date, hh: int) -> str:
    return dt.datetime.combine(day, dt.time(hh), tzinfo=dt.UTC).isoformat()


async def test_publishing_a_week_emits_exactly_its_shifts_in_order_keyed_by_store(
    roster: httpx.AsyncClient, tap: RosterTap, unique_id: str
) -> None:
    chain = await make_chain(roster, tap, unique_id)
    # registration: the store, every exam type already defined, then who works there
    berlin = [t for t in chain.setup[chain.berlin] if t != "ExamTypeDefined"]
    assert berlin == ["StoreRegistered", "OptometristJoined", "OptometristJoined"]
    shanghai = [t for t in chain.setup[chain.shanghai] if t != "ExamTypeDefined"]
    assert shanghai == ["StoreRegistered", "OptometristJoined"]
    b0, s0 = chain.mark(chain.berlin), chain.mark(chain.shanghai)

    lunch = [{"start": "12:00", "end": "13:00"}]
    weekdays = {d: {"start": "09:00", "end": "17:00", "breaks": lunch}
                for d in ("mon", "tue", "wed", "thu", "fri")}  # fmt: skip
    weekdays["sun"] = {"start": "10:00", "end": "16:00"}
    template = f"tpl-{unique_id}"
    await ok(await roster.put(f"/v1/templates/{template}", json={
        "optometrist_id": chain.o1, "store_id": chain.berlin, "days": weekdays,
    }))  # fmt: skip
    drafted = await ok(await roster.post(
        f"/v1/templates/{template}/expand", json={"first": "2026-03-23", "last": "2026-03-29"}
    ))  # fmt: skip
    assert [s["state"] for s in drafted["items"]] == ["draft"] * 6
    late = await ok(await roster.post("/v1/shifts", json={
        "shift_id": f"late-{unique_id}", "optometrist_id": chain.o2, "store_id": chain.berlin,
        "date": "2026-03-25", "start": "12:00", "end": "20:00",
    }), 201)  # fmt: skip
    assert late["state"] == "draft"

    published = await ok(await roster.post(
        f"/v1/stores/{chain.berlin}/roster/publish", json={"week_start": WEEK.isoformat()}
    ))  # fmt: skip
    assert published["status"] == "published"

    got = await tap.after(chain.berlin, b0, 7)
    days = [WEEK + dt.timedelta(days=i) for i in (0, 1, 2, 3, 4)]  # Mon-Fri, CET (+01:00)
    expected = [
        ("ShiftPublished", f"{template}-{d}", d, "09:00", "17:00", utc(d, 8), utc(d, 16))
        for d in days
    ]
    wednesday, sunday = days[2], WEEK + dt.timedelta(days=6)
    expected.insert(3, ("ShiftPublished", f"late-{unique_id}", wednesday, "12:00", "20:00",
                        utc(wednesday, 11), utc(wednesday, 19)))  # fmt: skip
    # Sunday 29 March is CEST (+02:00): 10:00-16:00 local is 08:00-14:00 UTC
    expected.append(("ShiftPublished", f"{template}-{sunday}", sunday, "10:00", "16:00",
                     utc(sunday, 8), utc(sunday, 14)))  # fmt: skip
    assert [
        (e.type, e.payload.shift_id, e.payload.date, e.payload.start, e.payload.end,
         e.payload.start_utc.isoformat(), e.payload.end_utc.isoformat())
        for e in got
    ] == expected  # fmt: skip
    assert all(e.store_id == chain.berlin and e.region == "eu" for e in got)
    assert [str(e.event_id) for e in got] == [e["event_id"] for e in published["events"]]
    assert got[0].payload.breaks[0].start == "12:00"

    # Published is published: a second publish emits nothing, Shanghai heard nothing more.
    again = await ok(await roster.post(
        f"/v1/stores/{chain.berlin}/roster/publish", json={"week_start": WEEK.isoformat()}
    ))  # fmt: skip
    assert again["events"] == []
    assert len(await tap.after(chain.berlin, b0, 7, settle_s=0.5)) == 7
    assert len(tap.by_key[chain.shanghai]) == s0
    day = await ok(
        await roster.get(f"/v1/stores/{chain.berlin}/shifts", params={"date": "2026-03-25"})
    )
    assert [s["shift_id"] for s in day["items"]] == [f"{template}-2026-03-25", f"late-{unique_id}"]


async def test_changes_to_published_shifts_are_drafts_until_published(
    roster: httpx.AsyncClient, tap: RosterTap, unique_id: str
) -> None:
    chain = await make_chain(roster, tap, unique_id)
    ids = [f"a-{unique_id}", f"b-{unique_id}", f"c-{unique_id}"]
    for shift_id, day in zip(ids, ("2026-03-24", "2026-03-25", "2026-03-26"), strict=True):
        await ok(await roster.post("/v1/shifts", json={
            "shift_id": shift_id, "optometrist_id": chain.o2, "store_id": chain.berlin,
            "date": day, "start": "09:00", "end": "13:00",
        }), 201)  # fmt: skip
    await ok(await roster.post("/v1/shifts/publish", json={"shift_ids": ids}))
    b0, s0 = chain.mark(chain.berlin) + 3, chain.mark(chain.shanghai)
    await tap.events(chain.berlin, b0, settle_s=0)

    # a: new hours; b: cancelled; c: moves to Shanghai (o2 works there too)
    edit = await ok(await roster.put(f"/v1/shifts/{ids[0]}", json={
        "optometrist_id": chain.o2, "store_id": chain.berlin, "date": "2026-03-24",
        "start": "10:00", "end": "14:00",
    }))  # fmt: skip
    assert edit["state"] == "draft" and edit["published"]["start"] == "09:00"
    assert (await ok(await roster.delete(f"/v1/shifts/{ids[1]}")))["state"] == "cancel_pending"
    await ok(await roster.put(f"/v1/shifts/{ids[2]}", json={
        "optometrist_id": chain.o2, "store_id": chain.shanghai, "date": "2026-03-26",
        "start": "17:00", "end": "21:00",
    }))  # fmt: skip
    await tap.events(chain.berlin, b0, settle_s=0.5)
    assert len(tap.by_key[chain.berlin]) == b0  # drafts emit nothing
    week = await ok(await roster.get(f"/v1/stores/{chain.berlin}/roster",
                                     params={"week_start": "2026-03-23"}))  # fmt: skip
    assert [(s["shift_id"], s["state"]) for s in week["items"]] == [
        (ids[0], "draft"), (ids[1], "cancel_pending"),
    ]  # fmt: skip

    await ok(await roster.post(
        f"/v1/stores/{chain.berlin}/roster/publish", json={"week_start": "2026-03-23"}
    ))  # fmt: skip
    berlin = await tap.after(chain.berlin, b0, 3)
    assert [(e.type, e.payload.shift_id) for e in berlin] == [
        ("ShiftChanged", ids[0]), ("ShiftCancelled", ids[1]), ("ShiftCancelled", ids[2]),
    ]  # fmt: skip
    assert (berlin[0].payload.start, berlin[0].payload.end) == ("10:00", "14:00")
    shanghai = await tap.after(chain.shanghai, s0, 1)
    assert [(e.type, e.payload.shift_id) for e in shanghai] == [("ShiftPublished", ids[2])]
    # 17:00-21:00 in Shanghai is 09:00-13:00 UTC
    assert shanghai[0].payload.start_utc == dt.datetime(2026, 3, 26, 9, tzinfo=dt.UTC)

    # A swap: o1 covers shift a; published as a ShiftChanged naming o1.
    swapped = await ok(await roster.post(f"/v1/shifts/{ids[0]}/swap",
                                         json={"optometrist_id": chain.o1}))  # fmt: skip
    assert swapped["items"][0]["optometrist_id"] == chain.o1
    await ok(await roster.post(f"/v1/shifts/{ids[0]}/publish"))
    last = (await tap.after(chain.berlin, b0 + 3, 1))[-1]
    assert (last.type, last.payload.optometrist_id) == ("ShiftChanged", chain.o1)

    # A cancelled shift drafted again is published anew (consumers had dropped it).
    await ok(await roster.put(f"/v1/shifts/{ids[1]}", json={
        "optometrist_id": chain.o2, "store_id": chain.berlin, "date": "2026-03-25",
        "start": "09:00", "end": "12:00",
    }))  # fmt: skip
    await ok(await roster.post(f"/v1/shifts/{ids[1]}/publish"))
    revived = await tap.after(chain.berlin, b0 + 4, 1)
    assert [(e.type, e.payload.shift_id, e.payload.end) for e in revived] == [
        ("ShiftPublished", ids[1], "12:00"),
    ]  # fmt: skip


def assert_problem(resp: httpx.Response, status: int, reason: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = resp.json()
    assert body["reason"] == reason, body
    return body


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31"])
async def test_days_at_the_ends_of_the_calendar_are_422_never_500(
    roster: httpx.AsyncClient, tap: RosterTap, unique_id: str, day: str
) -> None:
    # Converting such a day to UTC overflowed: a shift, a week's roster and a publish were 500.
    chain = await make_chain(roster, tap, unique_id)
    shift = {"optometrist_id": chain.o1, "store_id": chain.berlin, "date": day,
             "start": "09:00", "end": "17:00"}  # fmt: skip
    answers = [
        await roster.post("/v1/shifts", json=shift),
        await roster.get(f"/v1/stores/{chain.berlin}/roster", params={"week_start": day}),
        await roster.get(f"/v1/stores/{chain.berlin}/shifts", params={"date": day}),
        await roster.post(f"/v1/stores/{chain.berlin}/roster/publish", json={"week_start": day}),
        await roster.get(f"/v1/optometrists/{chain.o1}/schedule", params={"date": day}),
    ]
    for resp in answers:
        assert resp.status_code == 422, resp.text
        body = resp.json()  # the schema's own problem: `code`, and the field in `errors`
        assert body["code"] == "invalid_request", body
        assert body["errors"][0]["loc"][-1] in ("date", "week_start"), body


async def test_invalid_rosters_get_4xx_problems_with_a_reason(
    roster: httpx.AsyncClient, tap: RosterTap, unique_id: str
) -> None:
    chain = await make_chain(roster, tap, unique_id)

    def shift(**kw: Any) -> dict[str, Any]:
        return {"optometrist_id": chain.o2, "store_id": chain.berlin, "date": "2026-03-24",
                "start": "09:00", "end": "17:00", **kw}  # fmt: skip

    first = await ok(await roster.post("/v1/shifts", json=shift()), 201)
    # 15:00-20:00 in Shanghai is 08:00-13:00 in Berlin (CET): the same person, overlapping
    body = assert_problem(
        await roster.post("/v1/shifts", json=shift(store_id=chain.shanghai, start="15:00",
                                                   end="20:00")),
        409, "overlapping_shift",
    )  # fmt: skip
    assert body["conflicting_shift_id"] == first["shift_id"]
    # the next day o2 has no Berlin shift, so the Shanghai one is fine
    await ok(await roster.post("/v1/shifts", json=shift(
        store_id=chain.shanghai, date="2026-03-25", start="15:00", end="20:00")), 201)  # fmt: skip
    assert_problem(await roster.post("/v1/shifts", json=shift(start="07:00")), 422,
                   "outside_opening_hours")  # fmt: skip
    assert_problem(await roster.post("/v1/shifts", json=shift(date="2026-03-28")), 422,
                   "outside_opening_hours")  # Saturday closes at 14:00  # fmt: skip
    assert_problem(
        await roster.post("/v1/shifts", json=shift(
            date="2026-03-26", breaks=[{"start": "16:30", "end": "17:30"}])),
        422, "break_outside_shift",
    )  # fmt: skip
    assert_problem(await roster.post("/v1/shifts", json=shift(store_id="nowhere")), 422,
                   "unknown_store")  # fmt: skip
    assert_problem(await roster.post("/v1/shifts", json=shift(optometrist_id="nobody")), 422,
                   "unknown_optometrist")  # fmt: skip
    assert_problem(
        await roster.post("/v1/shifts", json=shift(optometrist_id=chain.o1,
                                                   store_id=chain.shanghai, start="10:00")),
        422, "not_assigned_to_store",
    )  # fmt: skip
    assert_problem(await roster.post("/v1/shifts", json=shift(start="17:00", end="09:00")), 422,
                   "invalid_interval")  # fmt: skip
    assert_problem(
        await roster.put(f"/v1/stores/x-{unique_id}", json={
            "name": "X", "region": "eu", "timezone": "Europe/Atlantis", "opening_hours": {},
        }),
        422, "bad_timezone",
    )  # fmt: skip
    assert_problem(
        await roster.put(f"/v1/stores/x-{unique_id}", json={
            "name": "X", "region": "eu", "timezone": "Europe/Berlin", "opening_hours": {
                "mon": [{"open": "09:00", "close": "13:00"}, {"open": "12:00", "close": "18:00"}],
            },
        }),
        422, "overlapping_opening_hours",
    )  # fmt: skip
    for bad_id in (f"a%7Cb-{unique_id}", "x" * 129):  # "|" splits the processor's keys
        refused = await roster.put(f"/v1/stores/{bad_id}", json={
            "name": "X", "region": "eu", "timezone": "Europe/Berlin", "opening_hours": {},
        })  # fmt: skip
        assert (refused.status_code, refused.json()["code"]) == (422, "invalid_request")
    assert_problem(
        await roster.post(f"/v1/optometrists/{chain.o1}/leave",
                          json={"start_date": "2026-03-02", "end_date": "2999-03-02"}),
        422, "leave_too_long",
    )  # fmt: skip
    # the clock says 2026-03-01: leave from 27 February is in the past, today is fine
    assert_problem(
        await roster.post(f"/v1/optometrists/{chain.o1}/leave",
                          json={"start_date": "2026-02-27", "end_date": "2026-03-02"}),
        422, "leave_in_past",
    )  # fmt: skip
    assert_problem(
        await roster.post("/v1/optometrists/nobody/leave",
                          json={"start_date": "2026-03-02", "end_date": "2026-03-02"}),
        404, "unknown_optometrist",
    )  # fmt: skip
    assert_problem(await roster.post("/v1/shifts/nothing/publish"), 404, "unknown_shift")
    assert_problem(
        await roster.post(f"/v1/stores/nowhere-{unique_id}/roster/publish",
                          json={"week_start": "2026-03-23"}),
        404, "unknown_store",
    )  # fmt: skip


async def test_leave_sick_days_and_training_go_to_every_store_of_the_optometrist(
    roster: httpx.AsyncClient, tap: RosterTap, unique_id: str
) -> None:
    chain = await make_chain(roster, tap, unique_id)
    leave = await ok(await roster.post(f"/v1/optometrists/{chain.o2}/leave", json={
        "leave_id": f"lv-{unique_id}", "start_date": "2026-03-01", "end_date": "2026-03-03",
    }))  # fmt: skip
    assert leave["leave_id"] == f"lv-{unique_id}"
    await ok(await roster.post(f"/v1/optometrists/{chain.o2}/sick-days",
                               json={"date": "2026-03-05"}))  # fmt: skip
    await ok(await roster.post(f"/v1/optometrists/{chain.o2}/training", json={
        "training_id": f"tr-{unique_id}", "date": "2026-03-29", "start": "14:00",
        "end": "16:00",
    }))  # fmt: skip
    for store_id in (chain.berlin, chain.shanghai):
        got = await tap.after(store_id, chain.mark(store_id), 3)
        assert [e.type for e in got] == ["LeaveGranted", "LeaveGranted", "TrainingScheduled"]
        assert [e.payload.kind for e in got[:2]] == ["leave", "sick"]
        # training is in the home store's zone (Berlin, CEST that day) wherever it is sent
        assert got[2].payload.start_utc == dt.datetime(2026, 3, 29, 12, tzinfo=dt.UTC)
    # a retry answers like the first time without emitting again; other content is a conflict
    retry = await ok(await roster.post(f"/v1/optometrists/{chain.o2}/leave", json={
        "leave_id": f"lv-{unique_id}", "start_date": "2026-03-01", "end_date": "2026-03-03",
    }))  # fmt: skip
    assert retry["events"] == leave["events"]
    assert_problem(await roster.post(f"/v1/optometrists/{chain.o2}/leave", json={
        "leave_id": f"lv-{unique_id}", "start_date": "2026-03-01", "end_date": "2026-03-04",
    }), 409, "duplicate")  # fmt: skip
    keyed = {"start_date": "2026-03-10", "end_date": "2026-03-10"}
    headers = {"Idempotency-Key": f"k-{unique_id}"}
    once = await ok(await roster.post(f"/v1/optometrists/{chain.o1}/leave", json=keyed,
                                      headers=headers))  # fmt: skip
    twice = await ok(await roster.post(f"/v1/optometrists/{chain.o1}/leave", json=keyed,
                                       headers=headers))  # fmt: skip
    assert once == twice
    berlin = await tap.after(chain.berlin, chain.mark(chain.berlin), 4, settle_s=0.8)
    assert [e.type for e in berlin].count("LeaveGranted") == 3  # lv, sick, keyed: once each


async def test_a_store_added_later_gets_the_leave_and_training_not_over_yet(
    roster: httpx.AsyncClient, tap: RosterTap, unique_id: str, roster_clock: FixedClock
) -> None:
    chain = await make_chain(roster, tap, unique_id)
    o1 = f"/v1/optometrists/{chain.o1}"
    for leave_id, first, last in (("past", "2026-03-02", "2026-03-03"),
                                  ("now", "2026-03-04", "2026-03-06"),
                                  ("soon", "2026-03-20", "2026-03-22")):  # fmt: skip
        await ok(await roster.post(f"{o1}/leave", json={
            "leave_id": f"{leave_id}-{unique_id}", "start_date": first, "end_date": last,
        }))  # fmt: skip
    for training_id, day in (("past", "2026-03-02"), ("soon", "2026-03-25")):
        await ok(await roster.post(f"{o1}/training", json={
            "training_id": f"{training_id}-{unique_id}", "date": day, "start": "14:00",
            "end": "16:00",
        }))  # fmt: skip
    roster_clock.set(dt.datetime(2026, 3, 5, 9, tzinfo=dt.UTC))
    try:
        await ok(await roster.put(o1, json={
            "name": "Anna", "skills": ["general"], "home_store_id": chain.berlin,
            "store_ids": [chain.berlin, chain.shanghai],
        }))  # fmt: skip
    finally:
        roster_clock.set(NOW)
    got = await tap.after(chain.shanghai, chain.mark(chain.shanghai), 4)
    assert [(e.type, getattr(e.payload, "optometrist_id", None)) for e in got] == [
        ("OptometristJoined", chain.o1), ("LeaveGranted", chain.o1), ("LeaveGranted", chain.o1),
        ("TrainingScheduled", chain.o1),
    ]  # fmt: skip
    assert [e.payload.leave_id for e in got[1:3]] == [f"now-{unique_id}", f"soon-{unique_id}"]
    assert got[3].payload.training_id == f"soon-{unique_id}"
    berlin = await tap.after(chain.berlin, chain.mark(chain.berlin) + 5, 1)
    assert [e.type for e in berlin] == ["OptometristJoined"]  # Berlin had them all already


async def test_store_hours_and_staff_changes_emit_their_events(
    roster: httpx.AsyncClient, tap: RosterTap, unique_id: str
) -> None:
    chain = await make_chain(roster, tap, unique_id)
    same = await ok(await roster.put(f"/v1/stores/{chain.berlin}", json={
        "name": "Berlin Mitte", "region": "eu", "timezone": "Europe/Berlin",
        "opening_hours": BERLIN_HOURS, "locale": "en",
    }))  # fmt: skip
    assert same["events"] == []  # repeating a PUT emits nothing
    await ok(await roster.post("/v1/shifts", json={
        "shift_id": f"sat-{unique_id}", "optometrist_id": chain.o2, "store_id": chain.berlin,
        "date": "2026-03-28", "start": "09:00", "end": "13:00",
    }), 201)  # fmt: skip
    await ok(await roster.post(f"/v1/shifts/sat-{unique_id}/publish"))
    b0 = chain.mark(chain.berlin) + 1
    shorter = {**BERLIN_HOURS, "sat": [{"open": "09:00", "close": "12:00"}]}
    changed = await ok(await roster.put(f"/v1/stores/{chain.berlin}", json={
        "name": "Berlin Mitte", "region": "eu", "timezone": "Europe/Berlin",
        "opening_hours": shorter, "locale": "en",
    }))  # fmt: skip
    assert changed["shifts_outside_hours"] == [f"sat-{unique_id}"]
    # o2 stops working in Shanghai; o1 leaves the company from 1 April
    await ok(await roster.put(f"/v1/optometrists/{chain.o2}", json={
        "name": "Li", "skills": ["general"], "home_store_id": chain.berlin,
        "store_ids": [chain.berlin],
    }))  # fmt: skip
    await ok(await roster.post(f"/v1/optometrists/{chain.o1}/offboard",
                               json={"effective_date": "2026-04-01"}))  # fmt: skip
    berlin = await tap.after(chain.berlin, b0, 3)
    assert [e.type for e in berlin] == ["StoreHoursChanged", "OptometristJoined", "OptometristLeft"]
    assert berlin[0].payload.opening_hours["sat"][0].close == "12:00"
    assert berlin[1].payload.store_ids == [chain.berlin]
    assert (berlin[2].payload.optometrist_id, berlin[2].payload.effective_date) == (
        chain.o1, dt.date(2026, 4, 1),
    )  # fmt: skip
    shanghai = await tap.after(chain.shanghai, chain.mark(chain.shanghai), 1)
    assert [(e.type, e.payload.optometrist_id) for e in shanghai] == [
        ("OptometristLeft", chain.o2),
    ]  # fmt: skip

    # o1 works until 31 March: shifts before are fine, from 1 April they are refused
    def shift(day: str) -> dict[str, str]:
        return {"optometrist_id": chain.o1, "store_id": chain.berlin, "date": day,
                "start": "09:00", "end": "12:00"}  # fmt: skip

    await ok(await roster.post("/v1/shifts", json=shift("2026-03-31")), 201)
    assert_problem(await roster.post("/v1/shifts", json=shift("2026-04-01")), 422,
                   "optometrist_left")  # fmt: skip


async def test_an_announced_departure_survives_edits_until_a_rehire(
    roster: httpx.AsyncClient, tap: RosterTap, unique_id: str
) -> None:
    chain = await make_chain(roster, tap, unique_id)
    anna = {"name": "Anna", "skills": ["general"], "home_store_id": chain.berlin,
            "store_ids": [chain.berlin]}  # fmt: skip
    april = {"optometrist_id": chain.o1, "store_id": chain.berlin, "date": "2026-04-01",
             "start": "09:00", "end": "12:00"}  # fmt: skip
    await ok(await roster.post(f"/v1/optometrists/{chain.o1}/offboard",
                               json={"effective_date": "2026-04-01"}))  # fmt: skip
    await ok(await roster.put(f"/v1/optometrists/{chain.o1}",
                              json={**anna, "skills": ["general", "dilation"]}))  # fmt: skip
    assert (await ok(await roster.get(f"/v1/optometrists/{chain.o1}")))["left_on"] == "2026-04-01"
    assert_problem(await roster.post("/v1/shifts", json=april), 422, "optometrist_left")
    # the departure is announced again after the OptometristJoined that would clear it
    got = await tap.after(chain.berlin, chain.mark(chain.berlin), 3)
    assert [(e.type, getattr(e.payload, "effective_date", None)) for e in got] == [
        ("OptometristLeft", dt.date(2026, 4, 1)), ("OptometristJoined", None),
        ("OptometristLeft", dt.date(2026, 4, 1)),
    ]  # fmt: skip
    # only an explicit rehire clears it
    await ok(await roster.put(f"/v1/optometrists/{chain.o1}", json={**anna, "rehire": True}))
    assert (await ok(await roster.get(f"/v1/optometrists/{chain.o1}")))["left_on"] is None
    await ok(await roster.post("/v1/shifts", json=april), 201)
    rehired = await tap.after(chain.berlin, chain.mark(chain.berlin) + 3, 1)
    assert [e.type for e in rehired] == ["OptometristJoined"]


async def test_swaps_exchange_or_cover_shifts_without_double_booking_anyone(
    roster: httpx.AsyncClient, tap: RosterTap, unique_id: str
) -> None:
    chain = await make_chain(roster, tap, unique_id)
    morning, evening = f"am-{unique_id}", f"pm-{unique_id}"
    for shift_id, opt, start, end in ((morning, chain.o1, "08:00", "12:00"),
                                      (evening, chain.o2, "14:00", "20:00")):  # fmt: skip
        await ok(await roster.post("/v1/shifts", json={
            "shift_id": shift_id, "optometrist_id": opt, "store_id": chain.berlin,
            "date": "2026-03-27", "start": start, "end": end,
        }), 201)  # fmt: skip
    await ok(await roster.post("/v1/shifts/publish", json={"shift_ids": [morning, evening]}))
    b0 = chain.mark(chain.berlin) + 2
    # o2 drafts a midday shift: covering the morning on top of it would overlap
    await ok(await roster.post("/v1/shifts", json={
        "shift_id": f"mid-{unique_id}", "optometrist_id": chain.o2, "store_id": chain.berlin,
        "date": "2026-03-27", "start": "10:00", "end": "13:00",
    }), 201)  # fmt: skip
    assert_problem(await roster.post(f"/v1/shifts/{morning}/swap",
                                     json={"optometrist_id": chain.o2}),
                   409, "overlapping_shift")  # fmt: skip
    await ok(await roster.delete(f"/v1/shifts/mid-{unique_id}"))  # a draft: simply dropped

    exchanged = await ok(await roster.post(f"/v1/shifts/{morning}/swap",
                                           json={"with_shift_id": evening}))  # fmt: skip
    assert [(s["shift_id"], s["optometrist_id"], s["state"]) for s in exchanged["items"]] == [
        (morning, chain.o2, "draft"), (evening, chain.o1, "draft"),
    ]  # fmt: skip
    await ok(await roster.post("/v1/shifts/publish", json={"shift_ids": [evening, morning]}))
    got = await tap.after(chain.berlin, b0, 2)
    assert [(e.type, e.payload.shift_id, e.payload.optometrist_id) for e in got] == [
        ("ShiftChanged", morning, chain.o2), ("ShiftChanged", evening, chain.o1),
    ]  # fmt: skip


async def test_a_published_shift_blocks_its_time_until_its_change_is_published(
    roster: httpx.AsyncClient, tap: RosterTap, unique_id: str
) -> None:
    chain = await make_chain(roster, tap, unique_id)
    held, other, sha = f"held-{unique_id}", f"other-{unique_id}", f"sha-{unique_id}"

    def shift(opt: str, store_id: str, start: str, end: str, **kw: str) -> dict[str, str]:
        return {"optometrist_id": opt, "store_id": store_id, "date": "2026-03-26",
                "start": start, "end": end, **kw}  # fmt: skip

    await ok(await roster.post("/v1/shifts", json=shift(chain.o2, chain.berlin, "09:00",
                                                        "17:00", shift_id=held)), 201)  # fmt: skip
    await ok(await roster.post(f"/v1/shifts/{held}/publish"))
    # 15:00-18:00 Shanghai is 08:00-11:00 Berlin (CET): blocked while the published
    # 09:00-17:00 is live, whether its edit or its cancellation is still a draft
    overlapping = shift(chain.o2, chain.shanghai, "15:00", "18:00", shift_id=sha)
    await ok(await roster.put(f"/v1/shifts/{held}",
                              json=shift(chain.o2, chain.berlin, "14:00", "18:00")))  # fmt: skip
    assert_problem(await roster.post("/v1/shifts", json=overlapping), 409,
                   "overlapping_published_shift")  # fmt: skip
    await ok(await roster.delete(f"/v1/shifts/{held}"))
    assert_problem(await roster.post("/v1/shifts", json=overlapping), 409,
                   "overlapping_published_shift")  # fmt: skip
    await ok(await roster.post(f"/v1/shifts/{held}/publish"))  # the cancellation is live
    await ok(await roster.post("/v1/shifts", json=overlapping), 201)
    await ok(await roster.post(f"/v1/shifts/{sha}/publish"))

    # an exchange between Berlin and Shanghai at the same time: publishing one side alone
    # would leave o2 live at both stores, so it is refused; both together go out
    await ok(await roster.post("/v1/shifts", json=shift(chain.o1, chain.berlin, "08:00",
                                                        "11:00", shift_id=other)), 201)  # fmt: skip
    await ok(await roster.post(f"/v1/shifts/{other}/publish"))
    await ok(await roster.put(f"/v1/optometrists/{chain.o1}", json={
        "name": "Anna", "skills": ["general"], "home_store_id": chain.berlin,
        "store_ids": [chain.berlin, chain.shanghai],
    }))  # fmt: skip
    await ok(await roster.post(f"/v1/shifts/{other}/swap", json={"with_shift_id": sha}))
    body = assert_problem(await roster.post(f"/v1/shifts/{other}/publish"), 409,
                          "overlapping_published_shift")  # fmt: skip
    assert body["conflicting_shift_id"] == sha
    await ok(await roster.post("/v1/shifts/publish", json={"shift_ids": [other, sha]}))


async def test_store_position_and_exam_preparation_notes_reach_the_events(
    roster: httpx.AsyncClient, tap: RosterTap, unique_id: str
) -> None:
    store_id = f"pos-{unique_id}"
    await ok(await roster.put(f"/v1/stores/{store_id}", json={
        "name": "Jing'an", "region": "cn", "timezone": "Asia/Shanghai",
        "opening_hours": SHANGHAI_HOURS, "locale": "zh-CN", "address": "1618 W Nanjing Rd",
        "latitude": 31.2235, "longitude": 121.4454,
    }))  # fmt: skip
    code = f"dilated-{unique_id}"
    await ok(await roster.put(f"/v1/exam-types/{code}", json={
        "name": "Dilated", "duration_minutes": 60, "required_skill": "dilation",
        "preparation_notes": "Do not drive for 4 hours afterwards.",
    }))  # fmt: skip

    async def both() -> bool:
        types = [e.type for e in tap.by_key[store_id]]
        return "StoreRegistered" in types and any(
            e.type == "ExamTypeDefined" and e.payload.code == code for e in tap.by_key[store_id]
        )

    await eventually(both)
    registered = next(e for e in tap.by_key[store_id] if e.type == "StoreRegistered")
    assert (registered.version, registered.payload.address) == ("1.1", "1618 W Nanjing Rd")
    assert (registered.payload.latitude, registered.payload.longitude) == (31.2235, 121.4454)
    exam = next(
        e for e in tap.by_key[store_id] if e.type == "ExamTypeDefined" and e.payload.code == code
    )
    assert exam.payload.preparation_notes == "Do not drive for 4 hours afterwards."
    out_of_range = await roster.put(f"/v1/stores/{store_id}", json={
        "name": "Jing'an", "region": "cn", "timezone": "Asia/Shanghai",
        "opening_hours": SHANGHAI_HOURS, "latitude": 95,
    })  # fmt: skip
    assert out_of_range.status_code == 422
    assert out_of_range.headers["content-type"] == "application/problem+json"
