"""Crash-safe publishing (outbox) and the day view fed by real booking events."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import pytest

from optisync_common.kafka import EventPublisher
from schemas.envelope import deterministic_event_id, new_envelope
from schemas.events.base import Actor, Channel, EventPayload
from schemas.events.booking import (
    BookingCancelled,
    BookingConfirmed,
    BookingReassigned,
    Customer,
    RosterCause,
)
from services.roster.adapters.commands import RosterCommands
from services.roster.adapters.outbox import Outbox
from tests.integration.roster.conftest import RosterTap, eventually
from tests.integration.roster.test_roster_api import make_chain, ok

SUNDAY = dt.date(2026, 3, 29)  # Berlin switches to CEST (+02:00) at 02:00 this morning


class CrashAfterStaging(Outbox):
    """Dies right after the batch reached MongoDB, before state or Kafka were touched."""

    async def _apply(self, batch: dict[str, Any]) -> None:
        raise RuntimeError("process killed")


class KafkaDown(Exception):
    pass


def commands_with(app: Any, outbox_cls: type[Outbox], publisher: Any = None) -> RosterCommands:
    real: RosterCommands = app.state.commands
    resources = app.state.resources
    outbox = outbox_cls(resources.db, publisher or (lambda: resources.publisher))
    return RosterCommands(real.repo, outbox, real.clock, real.region)


async def draft(roster: httpx.AsyncClient, shift_id: str, opt: str, store: str) -> None:
    await ok(await roster.post("/v1/shifts", json={
        "shift_id": shift_id, "optometrist_id": opt, "store_id": store,
        "date": SUNDAY.isoformat(), "start": "10:00", "end": "16:00",
        "breaks": [{"start": "12:00", "end": "12:30"}],
    }), 201)  # fmt: skip


async def test_a_publish_that_crashed_after_the_mongo_write_is_finished_once(
    roster_app: Any, roster: httpx.AsyncClient, tap: RosterTap, unique_id: str
) -> None:
    chain = await make_chain(roster, tap, unique_id)
    shift_id = f"crash-{unique_id}"
    await draft(roster, shift_id, chain.o1, chain.berlin)
    with pytest.raises(RuntimeError, match="killed"):
        await commands_with(roster_app, CrashAfterStaging).publish_shifts([shift_id])

    # The running service's sweeper finds the staged batch, applies it and sends the event.
    b0 = chain.mark(chain.berlin)
    got = await tap.after(chain.berlin, b0, 1)
    assert [(e.type, e.payload.shift_id) for e in got] == [("ShiftPublished", shift_id)]
    assert got[0].event_id == deterministic_event_id(
        "roster", "shift", shift_id, "1", "ShiftPublished", chain.berlin
    )
    shift = await ok(await roster.get(f"/v1/shifts/{shift_id}"))
    assert (shift["state"], shift["revision"]) == ("published", 1)
    # The user retrying the publish changes nothing and sends nothing more.
    assert (await ok(await roster.post(f"/v1/shifts/{shift_id}/publish")))["events"] == []
    assert len(await tap.after(chain.berlin, b0, 1, settle_s=0.8)) == 1


async def test_a_publish_while_kafka_is_down_is_sent_later_in_order(
    roster_app: Any, roster: httpx.AsyncClient, tap: RosterTap, unique_id: str
) -> None:
    chain = await make_chain(roster, tap, unique_id)
    ids = [f"down-{unique_id}", f"later-{unique_id}"]
    await draft(roster, ids[0], chain.o1, chain.berlin)
    await draft(roster, ids[1], chain.o2, chain.berlin)

    def unreachable() -> EventPublisher:
        raise KafkaDown("broker unreachable")

    down = commands_with(roster_app, Outbox, unreachable)
    first = await down.publish_shifts([ids[0]])
    second = await down.publish_shifts([ids[1]])
    assert (first.sent, second.sent) == (False, False)
    assert (await ok(await roster.get(f"/v1/shifts/{ids[0]}")))["state"] == "published"
    got = await tap.after(chain.berlin, chain.mark(chain.berlin), 2)
    assert [e.payload.shift_id for e in got] == ids
    assert [e.event_id for e in got] == [first.events[0].event_id, second.events[0].event_id]


def confirmed(booking_id: str, opt: str, start: dt.datetime) -> BookingConfirmed:
    return BookingConfirmed(
        booking_id=booking_id, idempotency_key=booking_id,
        customer=Customer(customer_ref=f"c-{booking_id}"), channel=Channel.WEB,
        exam_type="standard", optometrist_id=opt, slot_start=start,
        slot_end=start + dt.timedelta(minutes=30), timezone="Europe/Berlin",
        local_start=start.isoformat(),
    )  # fmt: skip


async def test_day_view_merges_published_shifts_bookings_and_gaps(
    roster_app: Any, roster: httpx.AsyncClient, tap: RosterTap, unique_id: str
) -> None:
    chain = await make_chain(roster, tap, unique_id)
    await draft(roster, f"day-{unique_id}", chain.o1, chain.berlin)
    await draft(roster, f"other-{unique_id}", chain.o2, chain.berlin)
    await ok(await roster.post(f"/v1/stores/{chain.berlin}/roster/publish",
                               json={"week_start": "2026-03-23"}))  # fmt: skip
    await ok(await roster.post(f"/v1/optometrists/{chain.o1}/training", json={
        "date": SUNDAY.isoformat(), "start": "14:00", "end": "14:30",
    }))  # fmt: skip

    def at(hhmm: str) -> dt.datetime:  # Berlin local on the DST Sunday -> UTC
        hour, minute = map(int, hhmm.split(":"))
        return dt.datetime(2026, 3, 29, hour - 2, minute, tzinfo=dt.UTC)

    b1, b2, b3 = (f"{n}-{unique_id}" for n in ("b1", "b2", "b3"))
    stream: list[EventPayload] = [
        confirmed(b1, chain.o1, at("10:00")),
        confirmed(b2, chain.o1, at("13:00")),
        confirmed(b3, chain.o2, at("15:00")),
        BookingCancelled(
            booking_id=b2, customer_ref="c", by=Actor.CUSTOMER, late=False,
            minutes_before_start=600, exam_type="standard", optometrist_id=chain.o1,
            slot_start=at("13:00"), local_start="2026-03-29T13:00:00+02:00",
        ),
        BookingReassigned(
            booking_id=b3, customer_ref="c", from_optometrist_id=chain.o2,
            to_optometrist_id=chain.o1, cause=RosterCause.LEAVE, slot_start=at("15:00"),
            local_start="2026-03-29T15:00:00+02:00",
        ),
    ]  # fmt: skip
    publisher: EventPublisher = roster_app.state.resources.publisher
    for payload in stream:
        await publisher.publish(new_envelope(
            payload, region="eu", store_id=chain.berlin, correlation_id=uuid.uuid4().hex,
            occurred_at=dt.datetime.now(dt.UTC),
        ))  # fmt: skip

    async def view_with_b3() -> dict[str, Any] | None:
        resp = await roster.get(f"/v1/optometrists/{chain.o1}/schedule",
                                params={"date": SUNDAY.isoformat()})  # fmt: skip
        view: dict[str, Any] = await ok(resp)
        return view if [b["booking_id"] for b in view["bookings"]] == [b1, b3] else None

    view = await eventually(view_with_b3)
    assert [b["start"] for b in view["bookings"]] == [
        "2026-03-29T10:00:00+02:00", "2026-03-29T15:00:00+02:00",
    ]  # fmt: skip
    working = [(w["start"][11:16], w["end"][11:16]) for w in view["shifts"][0]["working"]]
    assert working == [("10:00", "12:00"), ("12:30", "14:00"), ("14:30", "16:00")]
    gaps = [(g["start"][11:16], g["end"][11:16]) for g in view["gaps"]]
    assert gaps == [("10:30", "12:00"), ("12:30", "14:00"), ("14:30", "15:00"), ("15:30", "16:00")]
    assert view["shifts"][0]["start_utc"] == "2026-03-29T08:00:00+00:00"

    other = await ok(await roster.get(f"/v1/optometrists/{chain.o2}/schedule",
                                      params={"date": SUNDAY.isoformat()}))  # fmt: skip
    assert other["bookings"] == []  # b3 moved to o1
    assert [(g["start"][11:16], g["end"][11:16]) for g in other["gaps"]] == [
        ("10:00", "12:00"), ("12:30", "16:00"),
    ]  # fmt: skip

    await ok(await roster.post(f"/v1/optometrists/{chain.o1}/sick-days",
                               json={"date": SUNDAY.isoformat()}))  # fmt: skip
    sick = await ok(await roster.get(f"/v1/optometrists/{chain.o1}/schedule",
                                     params={"date": SUNDAY.isoformat()}))  # fmt: skip
    assert sick["on_leave"]["kind"] == "sick"
    assert sick["gaps"] == [] and sick["shifts"][0]["working"] == []
