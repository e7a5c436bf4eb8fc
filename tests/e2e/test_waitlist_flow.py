"""The waitlist through the real stack (HTTP -> Kafka -> processor -> Kafka -> MongoDB/Redis):
a cancelled slot is offered to the top three, the first accept wins atomically, holds keep
everyone else out until they lapse, and lapsed offers cascade to the next customers.

The e2e stack runs with an 8 s hold (tests/e2e/conftest.py) so lapses can be watched."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from .storesetup import final_outcome, free_at, publish_store, store_events, wait_for_availability

pytestmark = pytest.mark.e2e

DAY = dt.date(2031, 3, 4)  # a Tuesday, far ahead
HOLD_S = 8


def at(hhmm: str) -> str:
    return f"{DAY.isoformat()}T{hhmm}:00+01:00"  # Berlin in March before DST: UTC+1


def _post(api: str, path: str, key: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(f"{api}{path}", json=body, headers={"Idempotency-Key": key}, timeout=30)


def _book(api: str, store_id: str, customer: str, hhmm: str) -> httpx.Response:
    body = {
        "store_id": store_id, "exam_type": "standard", "slot_start": at(hhmm), "channel": "phone",
        "customer": {"customer_ref": customer, "name": customer, "locale": "en"},
    }  # fmt: skip
    return _post(api, "/v1/bookings", f"{store_id}-{customer}-{hhmm}", body)


def _full_store_with_waiting(api: str, endpoints: Any, store_id: str, waiting: int) -> str:
    """One optometrist 09:00-10:00, both half hours booked; `waiting` customers join the
    waitlist for 09:00-09:30 in order. Returns the 09:00 booking's id."""
    publish_store(endpoints, store_id, store_events(store_id, DAY, {"solo": ("09:00", "10:00")}))
    wait_for_availability(api, store_id, DAY, lambda v: free_at(v, "09:00") == 1)
    first = _book(api, store_id, "early", "09:00")
    assert first.status_code == 201, first.text
    assert _book(api, store_id, "later", "09:30").status_code == 201
    for n in range(1, waiting + 1):
        joined = _post(api, "/v1/waitlist", f"{store_id}-join-{n}", {
            "store_id": store_id, "exam_type": "standard", "channel": "wechat",
            "customer": {"customer_ref": f"w{n}", "name": f"Waiting {n}", "locale": "zh-CN"},
            "date_from": DAY.isoformat(), "date_to": DAY.isoformat(),
            "time_from": "09:00", "time_to": "09:30",
        })  # fmt: skip
        assert joined.status_code == 201, joined.text
        assert joined.json()["status"] == "waiting"
    return str(first.json()["booking_id"])


def _offers(api: str, store_id: str, predicate: Any, timeout: float = 30) -> dict[str, dict]:
    """Offers by customer from the staff view, once `predicate(offers)` holds."""
    deadline = time.monotonic() + timeout
    offers: dict[str, dict] = {}
    while time.monotonic() < deadline:
        params = {"date": DAY.isoformat()}
        resp = httpx.get(f"{api}/v1/stores/{store_id}/waitlist", params=params, timeout=30)
        assert resp.status_code == 200, resp.text
        offers = {
            f"{e['customer_ref']}#{o['offer_token'][:8]}": {**o, "customer_ref": e["customer_ref"]}
            for e in resp.json()["entries"]
            for o in e["offers"]
        }
        if predicate(offers):
            return offers
        time.sleep(0.2)
    raise AssertionError(f"offers never matched; last: {offers}")


def _confirmed_starts(api: str, store_id: str, expected: list[str]) -> list[str]:
    """Local start times of the store's confirmed bookings (MongoDB), once they match."""
    deadline, starts = time.monotonic() + 30, list[str]()
    while starts != expected and time.monotonic() < deadline:
        params = {"date": DAY.isoformat(), "status": "confirmed"}
        listing = httpx.get(f"{api}/v1/stores/{store_id}/bookings", params=params, timeout=30)
        starts = sorted(b["local_start"][11:16] for b in listing.json()["items"])
        time.sleep(0.2)
    return starts


def _live(offers: dict[str, dict]) -> list[dict]:
    return [o for o in offers.values() if o["state"] == "live"]


def test_a_cancellation_is_offered_to_the_top_three_and_one_of_50_accepts_wins(
    running_stack, endpoints, unique_id
):
    api = running_stack["booking-api"]
    store_id = f"wl-race-{unique_id}"
    booking_id = _full_store_with_waiting(api, endpoints, store_id, waiting=5)
    cancelled = _post(api, f"/v1/bookings/{booking_id}/cancel", f"{store_id}-cancel",
                      {"by": "customer"})  # fmt: skip
    assert cancelled.status_code == 200, cancelled.text

    offers = _offers(api, store_id, lambda o: len(_live(o)) == 3)
    assert sorted(o["customer_ref"] for o in _live(offers)) == ["w1", "w2", "w3"]
    assert all(o["local_start"].startswith(f"{DAY}T09:00") for o in _live(offers))
    # Held: not in the public view, and refused to a customer outside the offer.
    view = wait_for_availability(api, store_id, DAY, lambda v: v["seq"] is not None)
    assert free_at(view, "09:00") == 0
    outsider = _book(api, store_id, "outsider", "09:00")
    assert outsider.status_code == 409 and outsider.json()["code"] == "held", outsider.text

    async def storm() -> list[tuple[str, int, dict]]:
        tokens = [o["offer_token"] for o in _live(offers)]
        async with httpx.AsyncClient(base_url=api, timeout=60) as client:  # a loaded CI box

            async def accept(i: int) -> tuple[str, int, dict]:
                token = tokens[i % 3]
                key = {"Idempotency-Key": f"{store_id}-acc-{i}"}
                resp = await client.post(f"/v1/offers/{token}/accept", headers=key)
                status, answer = resp.status_code, resp.json()
                if status == 202:  # decided after the sync deadline: follow the status URL
                    status, answer = await final_outcome(client, answer["status_url"])
                return token, status, answer

            return await asyncio.gather(*(accept(i) for i in range(50)))

    results = asyncio.run(storm())
    statuses = Counter(status for _, status, _ in results)
    booked = {body["booking_id"] for _, status, body in results if status in (200, 201)}
    assert len(booked) == 1, statuses  # one booking, whatever the retries of the winner
    winner = next(token for token, status, _ in results if status in (200, 201))
    losers = [(t, b) for t, s, b in results if t != winner]
    assert losers and all(b["code"] == "offer_taken" for _, b in losers), losers
    assert statuses[409] + statuses[201] + statuses[200] == 50, statuses

    settled = _offers(api, store_id, lambda o: not _live(o) and len(o) == 3)
    states = Counter(o["state"] for o in settled.values())
    assert states == {"accepted": 1, "taken": 2}, settled
    assert _confirmed_starts(api, store_id, ["09:00", "09:30"]) == ["09:00", "09:30"]
    winner_doc = httpx.get(f"{api}/v1/bookings/{booked.pop()}", timeout=30).json()
    assert winner_doc["channel"] == "wechat" and winner_doc["customer"]["locale"] == "zh-CN"


def test_lapsed_offers_cascade_and_the_slot_returns_to_everyone(
    running_stack, endpoints, unique_id
):
    api = running_stack["booking-api"]
    store_id = f"wl-lapse-{unique_id}"
    booking_id = _full_store_with_waiting(api, endpoints, store_id, waiting=4)
    assert _post(api, f"/v1/bookings/{booking_id}/cancel", f"{store_id}-cancel",
                 {"by": "store"}).status_code == 200  # fmt: skip
    first = _offers(api, store_id, lambda o: len(_live(o)) == 3)
    first_tokens = {o["offer_token"] for o in _live(first)}

    # After the hold: the first three lapse and the fourth customer is offered the slot.
    second = _offers(api, store_id, lambda o: [x["customer_ref"] for x in _live(o)] == ["w4"],
                     timeout=HOLD_S + 20)  # fmt: skip
    assert _book(api, store_id, "outsider", "09:00").json()["code"] == "held"
    assert {o["offer_token"] for o in second.values() if o["state"] == "expired"} == first_tokens
    late = _post(api, f"/v1/offers/{next(iter(first_tokens))}/accept", f"{store_id}-late")
    assert late.status_code == 409, late.text
    assert late.json()["code"] == "offer_expired" and "lapsed" in late.json()["detail"]

    # Nobody left: the slot goes back to general availability and anyone can book it.
    wait_for_availability(api, store_id, DAY, lambda v: free_at(v, "09:00") == 1,
                          timeout=HOLD_S + 20)  # fmt: skip
    again = _post(api, "/v1/bookings", f"{store_id}-outsider-2", {
        "store_id": store_id, "exam_type": "standard", "slot_start": at("09:00"),
        "channel": "web", "customer": {"customer_ref": "outsider", "locale": "en"},
    })  # fmt: skip
    assert again.status_code == 201, again.text
