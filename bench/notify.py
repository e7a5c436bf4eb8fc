"""`python -m bench.notify`: booking event -> notify channel-adapter call latency.

Starts (or reuses) the bench infrastructure (profile `bench`, ports + 2000), a real local
signed-webhook receiver in this process and the notify worker as its own process (fresh
consumer group and its own MongoDB database, so nothing else's history is replayed), then
produces `BookingConfirmed` events open loop at fixed rates to `booking.events.v1`. Latency is
counted from each event's *scheduled* send time to the webhook request arriving at the
receiver: Kafka, the worker's Redis claim and the HTTP call are inside (its MongoDB outbox
write follows the call, batched).

A second step does the same for waitlist offers: `WaitlistJoined` per entry first (not timed;
notify keeps the contact), then `SlotOffered` open loop at `--offer-rate` (default 100/s),
latency to the offer's webhook request (the entry's contact is one MongoDB read by `_id`).

Run it on its own (`make bench` runs the booking benchmark, which stops its platform at the
end): `python -m bench.notify [--rates 100,500] [--seconds 10] [--offer-rate 100]`; against
another running infrastructure profile: `--profile test5000 --port-offset 5000`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from bench.hostspeed import HostSpeedProbe, fast_phase_us
from bench.platform import bench_infra, cpu_seconds, save_results
from bench.stats import percentiles
from deploy.local import infra
from optisync_common.kafka import make_producer
from optisync_common.settings import ServiceSettings
from schemas.envelope import new_envelope
from schemas.events.base import Channel
from schemas.events.booking import BookingConfirmed, Customer, SlotOffered, WaitlistJoined
from schemas.serde import encode

REPO = Path(__file__).resolve().parents[1]
SECRET = "bench-notify-secret-0123456789"
TZ = "Asia/Shanghai"


def _progress(msg: str) -> None:
    print(f"[bench-notify] {msg}", flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """The chat gateway: notes when each booking's confirmation and each waitlist entry's
    offer arrives."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.port = _free_port()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        now = time.perf_counter()
        body = await request.json()
        if body["kind"] == "confirmation":
            self.arrived.setdefault(body["booking_id"], now)
        elif body["kind"] == "waitlist_offer":
            self.arrived.setdefault(body["recipient"]["customer_ref"], now)
        return web.Response(status=200)


def _event(store_id: str, booking_id: str, slot: dt.datetime) -> Any:
    payload = BookingConfirmed(
        booking_id=booking_id, idempotency_key=booking_id, exam_type="standard",
        optometrist_id="o1",
        customer=Customer(customer_ref=f"c-{booking_id}", name="Bench", chat_id="wx",
                          locale="zh-CN"),
        channel=Channel.WECHAT, slot_start=slot, slot_end=slot + dt.timedelta(minutes=30),
        local_start=slot.isoformat(), timezone=TZ,
    )  # fmt: skip
    envelope = new_envelope(payload, region="cn", store_id=store_id, correlation_id=booking_id,
                            occurred_at=dt.datetime.now(dt.UTC))  # fmt: skip
    return encode(envelope)


def _joined(store_id: str, entry_id: str) -> Any:
    today = dt.datetime.now(dt.UTC).date()
    payload = WaitlistJoined(
        waitlist_entry_id=entry_id, idempotency_key=entry_id,
        customer=Customer(customer_ref=entry_id, name="Bench", chat_id="wx", locale="zh-CN"),
        channel=Channel.WECHAT, exam_type="standard", date_from=today,
        date_to=today + dt.timedelta(days=14),
    )  # fmt: skip
    envelope = new_envelope(payload, region="cn", store_id=store_id, correlation_id=entry_id,
                            occurred_at=dt.datetime.now(dt.UTC))  # fmt: skip
    return encode(envelope)


def _offered(store_id: str, entry_id: str, slot: dt.datetime) -> Any:
    now = dt.datetime.now(dt.UTC)
    payload = SlotOffered(
        offer_token=f"tok-{entry_id}", waitlist_entry_id=entry_id, customer_ref=entry_id,
        channel=Channel.WECHAT, exam_type="standard", optometrist_id="o1", slot_start=slot,
        local_start=slot.isoformat(), hold_until=now + dt.timedelta(minutes=30),
    )  # fmt: skip
    envelope = new_envelope(payload, region="cn", store_id=store_id, correlation_id=entry_id,
                            occurred_at=now)  # fmt: skip
    return encode(envelope)


async def _open_loop(
    producer: Any,
    receiver: Receiver,
    rate: int,
    seconds: int,
    stores: list[str],
    tag: str,
    offers: bool = False,
) -> dict[str, Any]:
    slot = (dt.datetime.now(dt.UTC) + dt.timedelta(days=10)).replace(second=0, microsecond=0)
    total = rate * seconds
    build = _offered if offers else _event
    # Built before the clock starts: the load generator must not be what is measured.
    messages = [
        (f"{tag}-{i}", build(stores[i % len(stores)], f"{tag}-{i}", slot)) for i in range(total)
    ]
    if offers:  # the entries join first (untimed): notify keeps their contacts
        for i in range(total):
            joined = _joined(stores[i % len(stores)], f"{tag}-{i}")
            await producer.send(
                joined.topic, value=joined.value, key=joined.key, headers=joined.headers
            )
        # a confirmation per store after them: once all are out, the joins are handled
        sentinels = [f"{tag}-sentinel-{store}" for store in stores]
        for store, booking_id in zip(stores, sentinels, strict=True):
            message = _event(store, booking_id, slot)
            await producer.send(
                message.topic, value=message.value, key=message.key, headers=message.headers
            )
        for _ in range(600):
            if all(b in receiver.arrived for b in sentinels):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
    scheduled: dict[str, float] = {}
    start = time.perf_counter() + 0.2
    for i, (booking_id, message) in enumerate(messages):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        scheduled[booking_id] = due
        await producer.send(
            message.topic, value=message.value, key=message.key, headers=message.headers
        )
    elapsed = time.perf_counter() - start
    for _ in range(300):  # up to 30 s for the tail
        if all(b in receiver.arrived for b in scheduled):
            break
        await asyncio.sleep(0.1)
    latencies = sorted(
        (receiver.arrived[b] - t) * 1000 for b, t in scheduled.items() if b in receiver.arrived
    )

    p50, p90, p99 = percentiles(latencies, 0.50, 0.90, 0.99)
    return {
        "step": "SlotOffered" if offers else "BookingConfirmed",
        "offered_per_s": rate,
        "sent_per_s": round(total / elapsed, 1),
        "events": total,
        "delivered": len(latencies),
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "max_ms": round(latencies[-1], 1) if latencies else None,
        "mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
    }


async def start_worker(
    endpoints: infra.Endpoints, run_id: str, receiver: Receiver, extra_env: dict[str, str]
) -> asyncio.subprocess.Process:
    """The notify worker as its own process (fresh consumer group from the end, own database
    and Redis prefix), delivering every channel to `receiver`; returns once it is ready."""
    worker_port = _free_port()
    log = REPO / ".run" / f"bench-notify-{run_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ, **endpoints.as_env(), "PYTHONPATH": str(REPO), "OPTISYNC_ENV": "test",
        "NOTIFY_SERVICE_NAME": f"notify-bench-{run_id}",  # own database and Redis prefix
        "NOTIFY_CONSUMER_GROUP": f"notify-bench-{run_id}", "NOTIFY_CONSUMER_OFFSET_RESET": "latest",
        "NOTIFY_DEFAULT_WEBHOOK_URL": f"http://127.0.0.1:{receiver.port}/hook",
        "NOTIFY_SIGNING_SECRET": SECRET, "NOTIFY_WORKER_PORT": str(worker_port),
        "NOTIFY_LOG_LEVEL": "warning", **extra_env,
    }  # fmt: skip
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.notify.entrypoints.worker",
            env=env, cwd=REPO, stdout=out, stderr=out,
        )  # fmt: skip
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            try:
                if (await client.get(f"http://127.0.0.1:{worker_port}/readyz")).is_success:
                    return proc
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"notify worker not ready, see {log}")


async def stop_worker(
    proc: asyncio.subprocess.Process, endpoints: infra.Endpoints, run_id: str
) -> None:
    proc.terminate()
    await proc.wait()
    await _drop_database(endpoints, f"optisync_notify-bench-{run_id}")


async def _run(args: argparse.Namespace, endpoints: infra.Endpoints, run_id: str) -> list[Any]:
    receiver = Receiver()
    await receiver.start()
    proc = await start_worker(endpoints, run_id, receiver, {})
    settings = endpoints.settings(ServiceSettings, service_name="bench-notify")
    producer = make_producer(settings)
    await producer.start()
    results: list[dict[str, Any]] = []
    probes: list[HostSpeedProbe] = []
    try:
        stores = [f"bench-{run_id}-{i}" for i in range(args.stores)]
        _progress("warm-up: 100 events at 50/s")
        await _open_loop(producer, receiver, 50, 2, stores, f"{run_id}-warm")
        for rate in args.rates:
            _progress(f"{rate} events/s for {args.seconds}s")
            idle = await _idle_cpu_rate(proc.pid)
            cpu_before, started = cpu_seconds(proc.pid), time.perf_counter()
            with HostSpeedProbe() as probe:
                row = await _open_loop(producer, receiver, rate, args.seconds, stores,
                                       f"{run_id}-r{rate}")  # fmt: skip
            probes.append(probe)
            await asyncio.sleep(2)  # the outbox writes after the calls settle
            results.append(_with_cpu(row, cpu_before, cpu_seconds(proc.pid), idle, started))
        if args.offer_rate:
            _progress(f"SlotOffered: {args.offer_rate} events/s for {args.seconds}s")
            tag = f"{run_id}-o{args.offer_rate}"
            idle = await _idle_cpu_rate(proc.pid)
            cpu_before, started = cpu_seconds(proc.pid), time.perf_counter()
            step = _open_loop(producer, receiver, args.offer_rate, args.seconds, stores, tag, True)
            with HostSpeedProbe() as probe:
                row = await step
            probes.append(probe)
            await asyncio.sleep(2)
            results.append(_with_cpu(row, cpu_before, cpu_seconds(proc.pid), idle, started))
    finally:
        await producer.stop()
        await stop_worker(proc, endpoints, run_id)
        await receiver.stop()
    fast_us = fast_phase_us([sample for probe in probes for sample in probe.samples])
    for row, probe in zip(results, probes, strict=True):
        row["host_speed"] = probe.summary(fast_us)
    return results


async def _idle_cpu_rate(pid: int, seconds: float = 2.0) -> float | None:
    """CPU seconds per second the idle worker spends (polling Kafka, the scheduler)."""
    before = cpu_seconds(pid)
    await asyncio.sleep(seconds)
    after = cpu_seconds(pid)
    return None if before is None or after is None else (after - before) / seconds


def _with_cpu(
    row: dict[str, Any],
    before: float | None,
    after: float | None,
    idle_rate: float | None,
    started: float,
) -> dict[str, Any]:
    """CPU per event above the idle worker's own (measured just before the step)."""
    if before is not None and after is not None and idle_rate is not None and row["events"]:
        busy = (after - before) - idle_rate * (time.perf_counter() - started)
        row["worker_cpu_ms_per_event"] = round(max(busy, 0.0) * 1000 / row["events"], 3)
    return row


async def _drop_database(endpoints: infra.Endpoints, name: str) -> None:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(endpoints.mongo_url)
    try:
        await client.drop_database(name)
    finally:
        await client.close()


def _table(rows: list[dict[str, Any]]) -> str:
    headers = ["event", "offered /s", "sent /s", "events", "delivered", "p50 ms", "p90 ms",
               "p99 ms", "max ms", "worker CPU ms/event", "host slow %"]  # fmt: skip
    cells = [[r["step"], r["offered_per_s"], r["sent_per_s"], r["events"], r["delivered"],
              r["p50_ms"], r["p90_ms"], r["p99_ms"], r["max_ms"],
              r.get("worker_cpu_ms_per_event"),
              round(100 * r["host_speed"]["slow_share"])] for r in rows]  # fmt: skip
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *cells, strict=False)]

    def line(values: list[Any]) -> str:
        return (
            "| " + " | ".join(str(v).ljust(w) for v, w in zip(values, widths, strict=False)) + " |"
        )

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, cells)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="notify: event -> adapter call latency")
    parser.add_argument("--rates", type=lambda s: [int(r) for r in s.split(",")],
                        default=[100, 500])  # fmt: skip
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--offer-rate", type=int, default=100, help="SlotOffered /s (0: skip)")
    parser.add_argument("--stores", type=int, default=48)
    parser.add_argument("--profile", default="bench")
    parser.add_argument("--port-offset", type=int, default=2000)
    args = parser.parse_args(argv)
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    with bench_infra(args.profile, args.port_offset) as (_, endpoints):
        try:
            import uvloop

            uvloop.install()  # the same event loop the services run on (uvicorn picks it)
        except ImportError:
            pass
        rows = asyncio.run(_run(args, endpoints, run_id))
    report = (
        f"# Notify benchmark {run_id}\n\nmachine: {os.cpu_count()} cores (load average "
        f"{os.getloadavg()[0]:.1f} at the end), Kafka + Redis + "
        f"FerretDB + the notify worker + this load generator and webhook receiver on one box; "
        f"{args.seconds}s per rate, {args.stores} stores.\n\nLatency: an event's scheduled "
        "send time -> its confirmation's signed webhook request arriving at the receiver "
        "(Kafka, the worker's Redis claim and HTTP call; the outbox write follows the call); "
        "SlotOffered: the same to the offer's request (plus the contact read by `_id`). "
        "Worker CPU per event: the worker process's CPU time over the step (and 2 s after "
        "it) less what it spends idle (measured for 2 s before), / events; for SlotOffered "
        "it includes the entries' WaitlistJoined. Host slow %: share of the step the cores ran in "
        "the hypervisor's slow phase (`bench.hostspeed`), which a p99 follows.\n\n"
        + _table(rows)
        + "\n\ntarget: p99 <= 100 ms\n"
    )
    print("\n" + report)
    save_results(run_id, "notify", report, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
