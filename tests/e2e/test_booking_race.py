"""Race-free booking through the real stack: HTTP -> Kafka -> processor -> Kafka -> HTTP, with
projections in MongoDB and Redis."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter

import httpx
import pytest

from .storesetup import final_outcome, free_at, publish_store, store_events, wait_for_availability

pytestmark = pytest.mark.e2e

DAY = dt.date(2031, 3, 3)  # a Monday, far ahead
CHANNELS = ["wechat", "whatsapp", "line", "phone", "front_desk", "store_system", "web"]


def at(hhmm: str) -> str:
    return f"{DAY.isoformat()}T{hhmm}:00+01:00"  # Berlin in March before DST: UTC+1


def body(store_id: str, i: int, start: str) -> dict:
    return {
        "store_id": store_id,
        "exam_type": "standard",
        "slot_start": start,
        "channel": CHANNELS[i % len(CHANNELS)],
        "customer": {"customer_ref": f"cust-{i}", "name": f"Customer {i}", "locale": "en"},
    }


async def _storm(api: str, store_id: str, start: str, n: int, retries: int) -> list:
    """n different customers at once, plus `retries` resends of earlier requests' keys."""
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=api, timeout=60, limits=limits) as client:

        async def one(i: int, key_of: int) -> tuple[int, int, dict]:
            resp = await _post(client, body(store_id, key_of, start), f"{store_id}-key-{key_of}")
            status, answer = resp.status_code, resp.json()
            if status == 202:  # decided after the sync deadline: follow the status URL
                status, answer = await final_outcome(client, answer["status_url"])
            return key_of, status, answer

        calls = [one(i, i) for i in range(n)] + [one(n + j, j) for j in range(retries)]
        return await asyncio.gather(*calls)


async def _post(client: httpx.AsyncClient, payload: dict, key: str) -> httpx.Response:
    """A client retries a dropped connection with the same key, as real channels do: the key
    makes the retry safe (one booking or one refusal, whatever reached the server)."""
    for attempt in range(3):
        try:
            return await client.post("/v1/bookings", json=payload, headers={"Idempotency-Key": key})
        except httpx.TransportError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _run_race(api: str, store_id: str, start: str, n: int = 450, retries: int = 50):
    results = asyncio.run(_storm(api, store_id, start, n, retries))
    statuses = Counter(status for _, status, _ in results)
    winners = {b["booking_id"] for _, status, b in results if status in (200, 201)}
    # a repeated key gets the same answer as the first time: one booking or one refusal
    by_key: dict[int, set[tuple[int, str | None]]] = {}
    for key, status, b in results:
        by_key.setdefault(key, set()).add((status, b.get("booking_id") or b.get("code")))
    return statuses, winners, by_key


def test_500_concurrent_requests_for_one_slot_exactly_one_wins(running_stack, endpoints, unique_id):
    api = running_stack["booking-api"]
    store_id = f"race1-{unique_id}"
    publish_store(endpoints, store_id, store_events(store_id, DAY, {"solo": ("09:00", "12:00")}))
    wait_for_availability(api, store_id, DAY, lambda v: free_at(v, "10:00") == 1)

    statuses, winners, by_key = _run_race(api, store_id, at("10:00"))

    assert len(winners) == 1, statuses
    assert set(statuses) <= {201, 409}, statuses
    assert statuses[201] in (1, 2)  # the winner, and its retry if it had one
    assert statuses[201] + statuses[409] == 500
    assert all(len(answers) == 1 for answers in by_key.values()), "a key got two answers"
    (booking_id,) = winners
    # the projections agree: one booking in MongoDB, the slot gone from the Redis view
    view = wait_for_availability(api, store_id, DAY, lambda v: free_at(v, "10:00") == 0)
    assert free_at(view, "09:30") == 1
    listing = _wait_listing(api, store_id, expected=1)
    assert [b["booking_id"] for b in listing] == [booking_id]


def test_a_slot_two_optometrists_can_serve_has_exactly_two_winners(
    running_stack, endpoints, unique_id
):
    api = running_stack["booking-api"]
    store_id = f"race2-{unique_id}"
    shifts = {"ann": ("09:00", "12:00"), "bob": ("10:00", "13:00")}
    publish_store(endpoints, store_id, store_events(store_id, DAY, shifts))
    wait_for_availability(api, store_id, DAY, lambda v: free_at(v, "10:00") == 2)

    statuses, winners, _ = _run_race(api, store_id, at("10:00"))

    assert len(winners) == 2, statuses
    assert set(statuses) <= {201, 409}
    listing = _wait_listing(api, store_id, expected=2)
    assert {b["optometrist_id"] for b in listing} == {"ann", "bob"}
    wait_for_availability(api, store_id, DAY, lambda v: free_at(v, "10:00") == 0)


def test_cancel_frees_the_slot_in_the_view(running_stack, endpoints, unique_id):
    api = running_stack["booking-api"]
    store_id = f"cancel-{unique_id}"
    publish_store(endpoints, store_id, store_events(store_id, DAY, {"solo": ("09:00", "12:00")}))
    wait_for_availability(api, store_id, DAY, lambda v: free_at(v, "11:00") == 1)
    created = httpx.post(f"{api}/v1/bookings", json=body(store_id, 1, at("11:00")),
                         headers={"Idempotency-Key": f"{store_id}-b"}, timeout=30)  # fmt: skip
    assert created.status_code == 201, created.text
    booking_id = created.json()["booking_id"]
    wait_for_availability(api, store_id, DAY, lambda v: free_at(v, "11:00") == 0)
    _wait_listing(api, store_id, expected=1)
    cancelled = httpx.post(f"{api}/v1/bookings/{booking_id}/cancel", json={"by": "customer"},
                           headers={"Idempotency-Key": f"{store_id}-c"}, timeout=30)  # fmt: skip
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    wait_for_availability(api, store_id, DAY, lambda v: free_at(v, "11:00") == 1)


def test_reschedule_is_atomic_under_a_concurrent_competitor(running_stack, endpoints, unique_id):
    """Mine moves 09:00 -> 10:30 while a competitor books 10:30 at the same moment: either I
    moved (and the competitor lost) or I kept 09:00 (and the competitor won); never both lost,
    never both on 10:30, and never a freed 09:00 without a new slot."""
    api = running_stack["booking-api"]
    store_id = f"move-{unique_id}"
    publish_store(endpoints, store_id, store_events(store_id, DAY, {"solo": ("09:00", "12:00")}))
    wait_for_availability(api, store_id, DAY, lambda v: free_at(v, "10:30") == 1)
    mine = httpx.post(f"{api}/v1/bookings", json=body(store_id, 1, at("09:00")),
                      headers={"Idempotency-Key": f"{store_id}-mine"}, timeout=30)  # fmt: skip
    assert mine.status_code == 201, mine.text
    booking_id = mine.json()["booking_id"]
    _wait_listing(api, store_id, expected=1)

    async def race() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(base_url=api, timeout=30) as client:
            return await asyncio.gather(
                client.post(f"/v1/bookings/{booking_id}/reschedule",
                            json={"slot_start": at("10:30")},
                            headers={"Idempotency-Key": f"{store_id}-move"}),
                client.post("/v1/bookings", json=body(store_id, 2, at("10:30")),
                            headers={"Idempotency-Key": f"{store_id}-rival"}),
            )  # fmt: skip

    moved, rival = asyncio.run(race())
    assert {moved.status_code, rival.status_code} in ({200, 409}, {201, 409}), (
        moved.text,
        rival.text,
    )
    listing = _wait_listing(api, store_id, expected=2 if rival.status_code == 201 else 1)
    starts = sorted(b["local_start"][11:16] for b in listing if b["status"] == "confirmed")
    if moved.status_code == 200:
        assert starts == ["10:30"]
        wait_for_availability(api, store_id, DAY, lambda v: free_at(v, "09:00") == 1)
    else:
        assert starts == ["09:00", "10:30"]
        wait_for_availability(api, store_id, DAY, lambda v: free_at(v, "09:00") == 0)


def _wait_listing(api: str, store_id: str, expected: int, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    items: list[dict] = []
    while time.monotonic() < deadline:
        params = {"date": DAY.isoformat()}
        # FerretDB answers this range query by scanning: slow once the test data has grown
        resp = httpx.get(f"{api}/v1/stores/{store_id}/bookings", params=params, timeout=30)
        if resp.status_code == 200:
            items = resp.json()["items"]
            if len(items) == expected:
                return items
        time.sleep(0.2)
    raise AssertionError(f"expected {expected} bookings in MongoDB, saw {items}")


def test_result_summary_goes_out_only_for_a_completed_exam(running_stack, endpoints, unique_id):
    api = running_stack["booking-api"]
    store_id = f"summary-{unique_id}"
    publish_store(endpoints, store_id, store_events(store_id, DAY, {"solo": ("09:00", "12:00")}))
    wait_for_availability(api, store_id, DAY, lambda v: free_at(v, "09:30") == 1)
    created = httpx.post(f"{api}/v1/bookings", json=body(store_id, 1, at("09:30")),
                         headers={"Idempotency-Key": f"{store_id}-b"}, timeout=30)  # fmt: skip
    assert created.status_code == 201, created.text
    url = f"{api}/v1/bookings/{created.json()['booking_id']}"
    summary = {"optometrist_id": "solo", "summary": "Both eyes -1.25; no change of lenses."}

    def post(path: str, key: str, json: dict | None = None) -> httpx.Response:
        return httpx.post(f"{url}{path}", json=json, headers={"Idempotency-Key": key}, timeout=30)

    early = post("/summary", f"{store_id}-s0", summary)
    assert (early.status_code, early.json()["code"]) == (409, "invalid_transition"), early.text
    assert post("/check-in", f"{store_id}-ci", {"staff_id": "desk"}).status_code == 200
    assert post("/complete", f"{store_id}-co").status_code == 200
    posted = post("/summary", f"{store_id}-s1", summary)
    assert posted.status_code == 200, posted.text
    assert posted.json()["booking_id"] == created.json()["booking_id"]
    assert post("/summary", f"{store_id}-s2", {"summary": ""}).status_code == 422


def test_a_key_gives_the_same_result_for_its_own_request_only(running_stack, endpoints, unique_id):
    """Through the real processor: a change retried with its key answers as the first time
    (bookings and the waitlist); a key sent again with another request is refused, and gives
    nothing of the first away."""
    api = running_stack["booking-api"]
    store_id = f"keys-{unique_id}"
    publish_store(endpoints, store_id, store_events(store_id, DAY, {"solo": ("09:00", "12:00")}))
    wait_for_availability(api, store_id, DAY, lambda v: free_at(v, "09:30") == 1)
    with httpx.Client(base_url=api, timeout=30) as client:

        def settled(resp: httpx.Response) -> tuple[int, dict]:
            if resp.status_code == 202:
                return asyncio.run(_settle(api, resp.json()["status_url"]))
            return resp.status_code, resp.json()

        def send(path: str, payload: dict, key: str) -> tuple[int, dict]:
            return settled(client.post(path, json=payload, headers={"Idempotency-Key": key}))

        booked = send("/v1/bookings", body(store_id, 1, at("09:30")), f"{store_id}-b")
        assert booked[0] == 201, booked
        booking = booked[1]["booking_id"]
        other = send("/v1/bookings", body(store_id, 2, at("10:30")), f"{store_id}-b")
        assert other[0] == 422 and other[1]["code"] == "idempotency_key_reused", other
        assert "Customer 1" not in str(other[1])

        cancel = f"/v1/bookings/{booking}/cancel"
        first = send(cancel, {"by": "customer"}, f"{store_id}-c")
        again = send(cancel, {"by": "customer"}, f"{store_id}-c")
        assert first[0] == again[0] == 200, (first, again)
        assert first[1]["status"] == again[1]["status"] == "cancelled"
        as_store = send(cancel, {"by": "store"}, f"{store_id}-c")
        assert as_store[0] == 422 and as_store[1]["code"] == "idempotency_key_reused"
        refused = send(cancel, {"by": "customer"}, f"{store_id}-c2")  # already cancelled
        refused_again = send(cancel, {"by": "customer"}, f"{store_id}-c2")
        assert refused[0] == refused_again[0] == 409, (refused, refused_again)
        assert refused[1]["code"] == refused_again[1]["code"] == "invalid_transition"

        wait = {
            "store_id": store_id, "exam_type": "standard", "channel": "whatsapp",
            "customer": {"customer_ref": "cust-w", "name": "Wu"},
            "date_from": DAY.isoformat(), "date_to": DAY.isoformat(),
        }  # fmt: skip
        joined = send("/v1/waitlist", wait, f"{store_id}-w")
        joined_again = send("/v1/waitlist", wait, f"{store_id}-w")
        assert joined[0] == joined_again[0] == 201, (joined, joined_again)
        entry = joined[1]["waitlist_entry_id"]
        assert joined_again[1]["waitlist_entry_id"] == entry
        left, left_again = (settled(client.delete(f"/v1/waitlist/{entry}")) for _ in range(2))
        assert left[0] == left_again[0] == 200, (left, left_again)
        assert left[1]["status"] == left_again[1]["status"] == "left"


async def _settle(api: str, status_url: str) -> tuple[int, dict]:
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:
        return await final_outcome(client, status_url)
