"""Create a store for an e2e test by publishing real roster events (as the roster service
does), then wait until the booking service has seen it."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import httpx

from deploy.local.infra import Endpoints
from optisync_common.kafka import EventPublisher, make_producer
from optisync_common.settings import ServiceSettings
from schemas.envelope import new_envelope
from schemas.events.base import EventPayload
from schemas.events.roster import (
    ExamTypeDefined,
    OptometristJoined,
    ShiftPublished,
    StoreRegistered,
)

TZ = "Europe/Berlin"


def store_events(
    store_id: str, day: dt.date, optometrists: dict[str, tuple[str, str]]
) -> list[EventPayload]:
    """A store open 08:00-20:00 with a 30-minute standard exam; each optometrist's shift."""
    hours = {d: [{"open": "08:00", "close": "20:00"}] for d in range(7)}
    events: list[EventPayload] = [
        StoreRegistered(store_id=store_id, name=store_id, region="eu", timezone=TZ,
                        opening_hours=hours, locale="en"),
        ExamTypeDefined(code="standard", name="Standard", duration_minutes=30,
                        required_skill="general"),
    ]  # fmt: skip
    for opt, (start, end) in optometrists.items():
        events += [
            OptometristJoined(optometrist_id=opt, name=opt, skills=["general"],
                              home_store_id=store_id, store_ids=[store_id]),
            ShiftPublished(shift_id=f"{store_id}-{opt}", optometrist_id=opt, store_id=store_id,
                           date=day, start=start, end=end),
        ]  # fmt: skip
    return events


def publish_store(endpoints: Endpoints, store_id: str, events: list[EventPayload]) -> None:
    settings = endpoints.settings(ServiceSettings, service_name="e2e", environment="test")

    async def publish() -> None:
        producer = make_producer(settings)
        await producer.start()
        try:
            publisher = EventPublisher(producer)
            now = dt.datetime.now(dt.UTC)
            for payload in events:
                await publisher.publish(
                    new_envelope(payload, region="eu", store_id=store_id,
                                 correlation_id=f"setup-{store_id}", occurred_at=now)
                )  # fmt: skip
        finally:
            await producer.stop()

    asyncio.run(publish())


def wait_for_availability(
    api: str, store_id: str, day: dt.date, predicate, timeout: float = 30.0
) -> dict:
    """Poll the availability view until `predicate(view)` holds."""
    deadline = time.monotonic() + timeout
    view: dict = {}
    while time.monotonic() < deadline:
        resp = httpx.get(
            f"{api}/v1/stores/{store_id}/availability",
            params={"date": day.isoformat(), "exam_type": "standard"},
            timeout=30,
        )
        if resp.status_code == 200:
            view = resp.json()
            if predicate(view):
                return view
        time.sleep(0.2)
    raise AssertionError(f"availability never matched; last view: {view}")


def free_at(view: dict, local_time: str) -> int:
    return next((s["free_count"] for s in view["slots"] if s["local_time"] == local_time), 0)


async def final_outcome(client: httpx.AsyncClient, status_url: str) -> tuple[int, dict]:
    """(HTTP status, body) a 202's status URL settles on: the decision came after the deadline."""
    for _ in range(1200):
        state = (await client.get(status_url)).json()
        if state["status"] == "done":
            return state["http_status"], state["body"]
        await asyncio.sleep(0.1)
    raise AssertionError(f"{status_url} never completed")
