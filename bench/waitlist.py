"""`python -m bench.waitlist`: cancellation -> waitlist offer delivered to the channel adapter.

The whole path for real: `POST /v1/bookings/{id}/cancel` on the booking API -> Kafka -> the
availability processor frees the slot and decides the offer (SlotOffered, in its transaction)
-> Kafka -> the notify worker -> the signed webhook request arriving at a local receiver.

Setup (profile `bench`, ports + 2000): stores with one optometrist whose every half hour of one
day is booked through the API; for each trial one customer joins the waitlist for exactly one
booked half hour, then that booking is cancelled. Trials start at a fixed rate (open loop);
latency runs from sending the cancel to the offer's webhook request arriving.
`python -m bench.waitlist [--trials 60] [--rate 5]`
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.notify import Receiver, start_worker, stop_worker
from bench.platform import save_results, wipe_data
from bench.run import BOOKING_PATH, FIRST_DAY, PORT_OFFSET, has_slots, seed
from bench.stats import percentiles
from deploy.local import infra, stack
from deploy.local.procs import wait_until
from optisync_common.topics import apply_registry

REPO = Path(__file__).resolve().parents[1]
SLOTS_PER_DAY = 24  # 08:00-20:00, 30 minutes each


def _progress(msg: str) -> None:
    print(f"[bench-waitlist] {msg}", flush=True)


def _start(minute: int) -> str:
    return f"{FIRST_DAY.isoformat()}T{minute // 60:02d}:{minute % 60:02d}:00+08:00"


async def _book_everything(
    client: httpx.AsyncClient, stores: list[str]
) -> list[tuple[str, int, str]]:
    """Every half hour of every store booked: (store, minute, booking id)."""

    async def book(store: str, minute: int) -> tuple[str, int, str]:
        body = {
            "store_id": store, "exam_type": "standard", "slot_start": _start(minute),
            "channel": "phone", "customer": {"customer_ref": f"{store}-{minute}"},
        }  # fmt: skip
        key = {"Idempotency-Key": f"{store}-{minute}"}
        resp = await client.post("/v1/bookings", headers=key, json=body)
        if resp.status_code != 201:
            raise RuntimeError(f"setup booking failed: {resp.status_code} {resp.text}")
        return store, minute, resp.json()["booking_id"]

    minutes = range(8 * 60, 20 * 60, 30)
    return await asyncio.gather(*(book(s, m) for s in stores for m in minutes))


async def _trial(
    client: httpx.AsyncClient, receiver: Receiver, store: str, minute: int, booking_id: str
) -> float | None:
    customer = f"w-{store}-{minute}"
    joined = await client.post("/v1/waitlist", headers={"Idempotency-Key": customer}, json={
        "store_id": store, "exam_type": "standard", "channel": "wechat",
        "customer": {"customer_ref": customer, "chat_id": "wx", "locale": "zh-CN"},
        "date_from": FIRST_DAY.isoformat(), "date_to": FIRST_DAY.isoformat(),
        "time_from": f"{minute // 60:02d}:{minute % 60:02d}",
        "time_to": f"{(minute + 30) // 60:02d}:{(minute + 30) % 60:02d}",
    })  # fmt: skip
    if joined.status_code != 201:
        raise RuntimeError(f"join failed: {joined.status_code} {joined.text}")
    await asyncio.sleep(0.5)  # notify has stored the entry's contact by now
    sent = time.perf_counter()
    cancelled = await client.post(f"/v1/bookings/{booking_id}/cancel", json={"by": "customer"},
                                  headers={"Idempotency-Key": f"cancel-{booking_id}"})  # fmt: skip
    if cancelled.status_code != 200:
        raise RuntimeError(f"cancel failed: {cancelled.status_code} {cancelled.text}")
    deadline = sent + 30
    # The receiver stamps the arrival itself: how often this looks does not change the figure.
    while customer not in receiver.arrived and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    arrived = receiver.arrived.get(customer)
    return (arrived - sent) * 1000 if arrived is not None else None


async def _run(
    args: argparse.Namespace, endpoints: infra.Endpoints, api: str, run_id: str
) -> dict[str, Any]:
    receiver = Receiver()
    await receiver.start()
    worker = await start_worker(endpoints, run_id, receiver, {})
    stores = [f"wl-{run_id}-{i}" for i in range(-(-args.trials // SLOTS_PER_DAY))]
    try:
        await seed(endpoints, stores, days=1, optometrists=("o1",))
        probe = f"{api}/v1/stores/{stores[-1]}/availability?date={FIRST_DAY}&exam_type=standard"
        wait_until(lambda: has_slots(probe), timeout=120, what="bench store views")
        async with httpx.AsyncClient(base_url=api, timeout=60) as client:
            _progress(f"booking every half hour of {len(stores)} stores")
            booked = (await _book_everything(client, stores))[: args.trials]
            _progress(f"{len(booked)} trials at {args.rate}/s: join, then cancel the slot")
            tasks = []
            for store, minute, booking_id in booked:
                tasks.append(
                    asyncio.create_task(_trial(client, receiver, store, minute, booking_id))
                )
                await asyncio.sleep(1 / args.rate)
            latencies = await asyncio.gather(*tasks)
    finally:
        await stop_worker(worker, endpoints, run_id)
        await receiver.stop()
    delivered = [x for x in latencies if x is not None]
    p50, p95, p99 = percentiles(delivered, 0.50, 0.95, 0.99)
    return {"trials": len(latencies), "delivered": len(delivered), "rate_per_s": args.rate,
            "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
            "max_ms": round(max(delivered), 1) if delivered else None}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="cancellation -> waitlist offer at the adapter")
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--rate", type=float, default=5.0, help="trials started per second")
    args = parser.parse_args(argv)
    cfg = infra.InfraConfig.from_env("bench", port_offset=PORT_OFFSET)
    endpoints = infra.up(cfg)
    asyncio.run(apply_registry(endpoints.kafka_bootstrap))
    urls = stack.start_services(cfg, endpoints, port_offset=PORT_OFFSET, only=BOOKING_PATH)
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        row = asyncio.run(_run(args, endpoints, urls["booking-api"], run_id))
    finally:
        stack.stop_services(cfg)
        wipe_data(cfg)  # the next benchmark starts empty
    report = (
        f"# Waitlist benchmark {run_id}\n\nmachine: {os.cpu_count()} cores (load average "
        f"{os.getloadavg()[0]:.1f} at the end); Kafka, Redis, FerretDB, the booking API, "
        "processor and projector, the notify worker, this load generator and the webhook "
        "receiver on one box.\n\nLatency: the cancel request sent -> the offer's signed webhook "
        "request arriving (API, Kafka, processor transaction, Kafka, notify, HTTP).\n\n"
        "| trials | delivered | trials/s | p50 ms | p95 ms | p99 ms | max ms |\n"
        "| --- | --- | --- | --- | --- | --- | --- |\n"
        f"| {row['trials']} | {row['delivered']} | {row['rate_per_s']} | {row['p50_ms']} | "
        f"{row['p95_ms']} | {row['p99_ms']} | {row['max_ms']} |\n\ntarget: p99 <= 1 s\n"
    )
    print("\n" + report)
    save_results(run_id, "waitlist", report, row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
