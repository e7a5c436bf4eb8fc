"""`make bench`: booking decisions end to end and availability reads, on this machine.

Runs its own copy of the booking path (profile `bench`, ports + 2000: booking API, availability
processor, projector), seeds stores with capacity through real roster events, then measures, in
one run:

1. availability reads: our `GET /v1/stores/{id}/availability` vs a bare FastAPI route answering
   the same bytes from the same machine, both driven by wrk (closed loop, 32 connections), plus
   the same read sent through the FastAPI route (the fast path declines a repeated parameter);
2. bookings at fixed open-loop rates (latency measured from each request's *scheduled* time, so
   a stalled server cannot hide its queue), then the max sustainable rate (closed loop), after
   an unmeasured warm-up; per step the mean time of each hop and the CPU each process spent
   per booking (the load generator included: it shares the cores);
3. the availability processor alone at fixed rates (`bench.processor`);
4. the processor's own CPU per decision, without Kafka (`bench.decisions`);
5. the processor restarted on the state the steps before left: from its local RocksDB copy,
   then with the copy wiped (the whole changelog replayed).

`--steps reads,bookings,processor,decisions,restart` picks sections (e.g. while tuning one).

Tables are printed and saved under bench/results/. Timings are this machine's: 2 cores shared by
Kafka, Redis, FerretDB, every service and the load generator.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import uvloop

from bench import processor as processor_bench
from bench.hostspeed import SLOW, HostSpeedProbe, fast_phase_us, fast_windows, in_fast_phase
from bench.httpload import HttpLoadClient, HttpLoadError
from bench.platform import cpu_seconds, save_results, wipe_data
from bench.stats import markdown_table, percentiles, steady_rate
from deploy.local import infra, stack
from deploy.local.procs import ManagedProcess, wait_until
from optisync_common.kafka import EventPublisher, make_producer
from optisync_common.settings import ServiceSettings
from optisync_common.topics import apply_registry
from schemas.envelope import new_envelope
from schemas.events.base import EventPayload
from schemas.events.roster import (
    ExamTypeDefined,
    OptometristJoined,
    ShiftPublished,
    StoreRegistered,
)
from services.booking.entrypoints.processor import APP_ID as PROCESSOR_APP_ID

REPO = Path(__file__).resolve().parents[1]
PORT_OFFSET = 2000  # every port stays below the ephemeral range (32768+)
TZ = "Asia/Shanghai"
FIRST_DAY = dt.date(2031, 1, 6)
OPTOMETRISTS = ("o1", "o2", "o3", "o4")
SLOT_MINUTES = range(8 * 60, 20 * 60, 30)  # the starts `_slots` books, store-local
WARM_UP_S, WARM_UP_RATE = 20, 300
CLOSED_LOOP_CEILING = 2500  # bookings/s, above any closed-loop rate seen on these machines
BOOKING_PATH = ("booking-api", "booking-processor", "booking-projector")
PROCESSOR = "booking-processor"


def _progress(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def has_slots(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(json.loads(resp.read()).get("slots"))
    except Exception:
        return False


# --------------------------------------------------------------------------- setup


def roster(
    store_id: str, days: int, optometrists: tuple[str, ...] = OPTOMETRISTS
) -> list[EventPayload]:
    hours = {d: [{"open": "08:00", "close": "20:00"}] for d in range(7)}
    events: list[EventPayload] = [
        StoreRegistered(store_id=store_id, name=store_id, region="cn", timezone=TZ,
                        opening_hours=hours, locale="zh-CN"),
        ExamTypeDefined(code="standard", name="Standard", duration_minutes=30,
                        required_skill="general"),
    ]  # fmt: skip
    for opt in optometrists:
        events.append(
            OptometristJoined(optometrist_id=opt, name=opt, skills=["general"],
                              home_store_id=store_id, store_ids=[store_id])
        )  # fmt: skip
        for d in range(days):
            day = FIRST_DAY + dt.timedelta(days=d)
            events.append(
                ShiftPublished(shift_id=f"{store_id}-{opt}-{day}", optometrist_id=opt,
                               store_id=store_id, date=day, start="08:00", end="20:00")
            )  # fmt: skip
    return events


SEED_CHUNK = 2_000  # roster events in flight at once


async def seed(
    endpoints: infra.Endpoints,
    stores: list[str],
    days: int,
    optometrists: tuple[str, ...] = OPTOMETRISTS,
) -> None:
    settings = endpoints.settings(ServiceSettings, service_name="bench", environment="test")
    producer = make_producer(settings)
    await producer.start()
    try:
        publisher = EventPublisher(producer)
        now = dt.datetime.now(dt.UTC)
        envelopes = [
            new_envelope(e, region="cn", store_id=s, correlation_id="bench", occurred_at=now)
            for s in stores
            for e in roster(s, days, optometrists)
        ]
        # In chunks: all at once, a long step's roster (40 stores x 183 days) outgrew the
        # producer's buffer and its sends timed out waiting for room.
        for i in range(0, len(envelopes), SEED_CHUNK):
            await asyncio.gather(*(publisher.publish(e) for e in envelopes[i : i + SEED_CHUNK]))
    finally:
        await producer.stop()


def _slots(stores: list[str], days: int) -> Iterator[tuple[str, str, str]]:
    """(store, optometrist, slot start) in an order that spreads load over stores."""
    for d in range(days):
        day = FIRST_DAY + dt.timedelta(days=d)
        for minute in SLOT_MINUTES:
            start = f"{day.isoformat()}T{minute // 60:02d}:{minute % 60:02d}:00+08:00"
            for opt in OPTOMETRISTS:
                for store in stores:
                    yield store, opt, start


# --------------------------------------------------------------------------- availability


def _ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("wrk is needed: sudo apt-get install -y wrk")
    _progress("installing wrk from Debian")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, env=env,
                   capture_output=True)  # fmt: skip
    return shutil.which("wrk") or "wrk"


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk(url: str, seconds: int, connections: int = 32) -> dict[str, float]:
    out = subprocess.run(
        [_ensure_wrk(), "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {
        p: float(v) * _UNITS[u] for p, v, u in re.findall(r"\s(50|99)%\s+([\d.]+)(us|ms|s)\b", out)
    }
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "rps": rate, "p50_ms": lat["50"], "p99_ms": lat["99"],
        "errors": float(non2xx.group(1)) if non2xx else 0.0,
    }  # fmt: skip


# --------------------------------------------------------------------------- bookings


async def _post(client: HttpLoadClient, slot: tuple[str, str, str], key: str) -> int:
    store, opt, start = slot
    payload = {
        "store_id": store, "exam_type": "standard", "slot_start": start, "optometrist_id": opt,
        "channel": "web", "customer": {"customer_ref": key, "locale": "zh-CN"},
    }  # fmt: skip
    try:
        status, _ = await client.post_json(
            "/v1/bookings", orjson.dumps(payload), {"Idempotency-Key": key}
        )
    except (OSError, asyncio.IncompleteReadError, HttpLoadError):
        return 0
    return status


async def open_loop(
    api: str, rate: int, seconds: int, slots: Iterator[tuple[str, str, str]], tag: str
) -> dict[str, Any]:
    latencies: list[float] = []
    answered_at: list[float] = []
    sent: list[tuple[float, float]] = []  # (scheduled, latency ms): for `_fast_phase`
    statuses: Counter[int] = Counter()
    client = HttpLoadClient(api, limit=512)
    start = time.perf_counter()

    async def one(scheduled: float, slot: tuple[str, str, str], key: str) -> None:
        statuses[await _post(client, slot, key)] += 1
        answered_at.append(time.perf_counter())
        latencies.append((answered_at[-1] - scheduled) * 1000)
        sent.append((scheduled, latencies[-1]))

    tasks = []
    for k in range(rate * seconds):
        scheduled = start + k / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled, next(slots), f"{tag}-{k}")))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    await client.close()
    return {
        **_summary(rate, latencies, statuses, elapsed),
        "steady_rps": steady_rate(answered_at, start, seconds),
        SENT: sent,
    }


SENT = "_sent"  # an open-loop step's requests, taken out of its results by `_fast_phase`


def _fast_phase(step: dict[str, Any], probe: HostSpeedProbe, fast_us: float) -> dict[str, Any]:
    """The step's p99 over the requests sent while the host ran at its fast phases' speed,
    and what share of the requests that was."""
    sent = step.pop(SENT)
    windows = fast_windows(probe.timed, fast_us)
    fast = [latency for at, latency in sent if in_fast_phase(at, windows)]
    (p99,) = percentiles(fast, 0.99)
    return {"requests": len(fast), "share": round(len(fast) / len(sent), 3) if sent else 0.0,
            "p99_ms": p99}  # fmt: skip


async def _closed_loop(
    api: str, concurrency: int, seconds: int, slots: Iterator[tuple[str, str, str]], tag: str
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    counter = itertools.count()
    client = HttpLoadClient(api, limit=concurrency)
    start = time.perf_counter()
    stop = start + seconds

    async def one_client() -> None:
        while time.perf_counter() < stop:
            # A server failing fast books nothing and outruns the seeded supply: end early.
            if (slot := next(slots, None)) is None:
                return
            began = time.perf_counter()
            statuses[await _post(client, slot, f"{tag}-{next(counter)}")] += 1
            latencies.append((time.perf_counter() - began) * 1000)

    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    await client.close()
    if elapsed < seconds:
        _progress(f"the closed loop ran out of seeded slots after {elapsed:.1f}s: {statuses}")
    return _summary(None, latencies, statuses, elapsed)


def _summary(
    rate: int | None, latencies: list[float], statuses: Counter[int], elapsed: float
) -> dict[str, Any]:
    p50, p95, p99 = percentiles(latencies, 0.50, 0.95, 0.99)
    return {
        "target_rps": rate,
        "requests": len(latencies),
        "achieved_rps": round(len(latencies) / elapsed, 1),
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
        "statuses": dict(sorted(statuses.items())),
    }


# --------------------------------------------------------------------------- report


def _fast_cell(step: dict[str, Any]) -> str:
    fast = step.get("fast_phase")
    if not fast or not fast["requests"]:
        return "-"
    return f"{fast['p99_ms']} ({100 * fast['share']:.0f}%)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=10, help="duration of each step")
    parser.add_argument("--rates", default="100,250,500,1000")
    parser.add_argument("--processor-rates", default="100,500,1000,2000")
    parser.add_argument(
        "--clients", type=int, default=128,
        help="closed-loop clients for the max rate (enough that their count is not the limit)",
    )  # fmt: skip
    parser.add_argument("--stores", type=int, default=40)
    parser.add_argument(
        "--days", type=int, default=28,
        help="days of shifts to seed (raised when the steps would book more slots than that)",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="leave the bench platform running")
    parser.add_argument(
        "--keep-data", action="store_true",
        help="measure on the data earlier runs left (default: start from empty servers)",
    )  # fmt: skip
    parser.add_argument(
        "--steps", default=",".join(STEPS),
        help=f"what to measure, a subset of {','.join(STEPS)} (e.g. while tuning one)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    steps = [s for s in args.steps.split(",") if s]
    if unknown := set(steps) - set(STEPS):
        parser.error(f"unknown steps {sorted(unknown)}; choose from {','.join(STEPS)}")

    args.days = days_needed(args, steps)
    bench = open_platform(args)
    run_id = bench.run_id
    sections = [
        f"# Benchmark {run_id}\n\nmachine: {os.cpu_count()} cores; everything on one box; "
        f"{args.seconds}s per step"
    ]
    data: dict[str, Any] = {}
    for step in steps:
        section, data[step] = getattr(bench, f"measure_{step}")()
        sections.append(section)
    report = "\n\n".join(sections)
    print("\n" + report)
    save_results(run_id, "booking", report, data)
    close_platform(bench)
    return 0


def open_platform(args: argparse.Namespace) -> Bench:
    """The booking path on the bench profile's servers, seeded with `args.stores` stores."""
    cfg = infra.InfraConfig.from_env("bench", port_offset=PORT_OFFSET)
    if not args.keep_data:
        stack.stop_services(cfg)
        wipe_data(cfg)
    endpoints = infra.up(cfg)
    asyncio.run(apply_registry(endpoints.kafka_bootstrap))
    # The booking path only (notify and analytics have their own benchmarks and would compete
    # for the same two cores), started afresh so the code measured is the code checked out.
    stack.stop_services(cfg)
    urls = stack.start_services(cfg, endpoints, port_offset=PORT_OFFSET, only=BOOKING_PATH)
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    bench = Bench(args, cfg, endpoints, urls, run_id)
    bench.seed()
    return bench


def close_platform(bench: Bench) -> None:
    if not bench.args.keep:
        # Empty again: the benchmarks after this one (`make bench`) share the profile, and
        # FerretDB answers a store's day list by scanning every booking document.
        stack.stop_services(bench.cfg)
        wipe_data(bench.cfg)


STEPS = ("reads", "bookings", "processor", "decisions", "restart")


def days_needed(args: argparse.Namespace, steps: list[str]) -> int:
    """Seeded days enough that no step runs out of free slots (each booking takes one; a
    closed loop of 60 s used to exhaust the default 28 days)."""
    seconds, stores, days = int(args.seconds), int(args.stores), int(args.days)
    bookings = WARM_UP_S * WARM_UP_RATE
    if "bookings" in steps:
        bookings += seconds * (sum(int(r) for r in args.rates.split(",")) + CLOSED_LOOP_CEILING)
    if "processor" in steps:
        bookings += seconds * sum(int(r) for r in args.processor_rates.split(","))
    per_day = len(SLOT_MINUTES) * len(OPTOMETRISTS) * stores
    return max(days, -(-bookings // per_day))


class Bench:
    """One run's platform, stores and slot supply; each `measure_*` is one report section."""

    def __init__(
        self,
        args: argparse.Namespace,
        cfg: infra.InfraConfig,
        endpoints: infra.Endpoints,
        urls: dict[str, str],
        run_id: str,
    ) -> None:
        self.args = args
        self.cfg = cfg
        self.endpoints = endpoints
        self.urls = urls
        self.api = urls["booking-api"]
        self.run_id = run_id
        self.warmed = False
        self.stores = [f"bench-{run_id}-{i}" for i in range(args.stores)]
        self.slots = _slots(self.stores, args.days)
        self.probe = (
            f"{self.api}/v1/stores/{self.stores[-1]}/availability"
            f"?date={FIRST_DAY}&exam_type=standard"
        )

    def seed(self) -> None:
        _progress(
            f"seeding {len(self.stores)} stores x {len(OPTOMETRISTS)} optometrists x "
            f"{self.args.days} days"
        )
        asyncio.run(seed(self.endpoints, self.stores, self.args.days))
        wait_until(lambda: has_slots(self.probe), timeout=120, what="bench availability view")
        # The roster backlog is decided and projected before anything is measured.
        _drain(self.urls["booking-processor"])
        _drain(self.urls["booking-projector"])

    def warm_up(self, seconds: int = WARM_UP_S, rate: int = WARM_UP_RATE) -> None:
        """Bookings nobody measures: connection pools and caches fill, and the broker's JIT
        compiler settles (on two cores it otherwise takes a tenth of a core for a minute)."""
        self.warmed = True
        _progress(f"warm-up: bookings at {rate}/s for {seconds}s (not measured)")
        uvloop.run(open_loop(self.api, rate, seconds, self.slots, f"{self.run_id}-warm"))
        _drain(self.urls["booking-processor"])
        _drain(self.urls["booking-projector"])

    def measure_reads(self) -> tuple[str, dict[str, Any]]:
        # The ceiling answers the very bytes our route answers, so the two differ only in what
        # our route does to find them.
        body = self.cfg.run_dir / "bare-fastapi.json"
        with urllib.request.urlopen(self.probe, timeout=5) as resp:
            body.write_bytes(resp.read())
        bare = ManagedProcess("bare-fastapi", self.cfg.run_dir / "bare-fastapi")
        bare_port = 8999 + PORT_OFFSET
        bare.start([sys.executable, "-m", "bench.bare_app", str(bare_port), str(body)],
                   cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
        try:
            wait_until(lambda: infra.port_open("127.0.0.1", bare_port), timeout=30, what="bare")
            _progress("availability reads vs a bare FastAPI route (wrk, 32 connections)")
            reads = {
                "bare FastAPI route": _wrk(f"http://127.0.0.1:{bare_port}/bare", self.args.seconds),
                "GET availability": _wrk(self.probe, self.args.seconds),
                # A repeated parameter is left to the route: the same read through FastAPI's
                # routing and validation, for comparison.
                "GET availability via the FastAPI route": _wrk(
                    self.probe + "&exam_type=standard", self.args.seconds
                ),
            }
        finally:
            bare.stop()
        ratio = reads["GET availability"]["rps"] / reads["bare FastAPI route"]["rps"]
        section = "## Availability reads\n\n" + markdown_table(
            ["endpoint", "req/s", "p50 ms", "p99 ms", "non-2xx"],
            [[k, round(v["rps"]), round(v["p50_ms"], 2), round(v["p99_ms"], 2), int(v["errors"])]
             for k, v in reads.items()],
        ) + (f"\n\nboth answer the same {body.stat().st_size} bytes; availability / bare = "
             f"{ratio:.0%} (target >= 80%)")  # fmt: skip
        return section, reads

    def measure_bookings(self) -> tuple[str, dict[str, Any]]:
        rates = [int(r) for r in self.args.rates.split(",")]
        seconds, api = self.args.seconds, self.api
        processor = self.urls["booking-processor"]
        self.warm_up()
        steps: list[dict[str, Any]] = []
        probes: list[HostSpeedProbe] = []
        projector = self.urls["booking-projector"]
        for rate in rates:
            _progress(f"bookings open loop at {rate}/s for {seconds}s")
            before, cpu, ages = _hops(api), self._cpu(), _batch_ages(projector)
            transactions, started = _transactions(processor), time.perf_counter()
            # uvloop: the load generator shares the two cores with what it measures.
            tag = f"{self.run_id}-s{len(steps)}-r{rate}"
            with HostSpeedProbe() as probe:
                step = uvloop.run(open_loop(api, rate, seconds, self.slots, tag))
            probes.append(probe)
            step["hops_mean_ms"] = _hop_means(before, _hops(api))
            step.update(_transaction_rates(transactions, _transactions(processor), started))
            step["cpu_ms_per_booking"] = self._cpu_per(cpu, step["requests"])
            step["projection_age"] = _age_summary(ages, _batch_ages(projector))
            steps.append(step)
            _drain(self.urls["booking-projector"])  # the next step starts with empty queues
        clients = self.args.clients
        _progress(f"bookings closed loop, {clients} concurrent clients (max sustainable rate)")
        cpu, ages = self._cpu(), _batch_ages(projector)
        with HostSpeedProbe() as probe:
            saturated = uvloop.run(
                _closed_loop(api, clients, seconds, self.slots, f"{self.run_id}-max")
            )
        probes.append(probe)
        saturated["cpu_ms_per_booking"] = self._cpu_per(cpu, saturated["requests"])
        saturated["projection_age"] = _age_summary(ages, _batch_ages(projector))
        fast_us = fast_phase_us([s for p in probes for s in p.samples])
        for step, probe in zip([*steps, saturated], probes, strict=True):
            step["host_speed"] = probe.summary(fast_us)
            if SENT in step:  # an open-loop step
                step["fast_phase"] = _fast_phase(step, probe, fast_us)
        _drain(self.urls["booking-processor"])
        rows = [*steps, {**saturated, "target_rps": f"max ({clients} clients)"}]
        section = "\n\n".join([
            "## Booking decisions end to end (HTTP > Kafka > processor > Kafka > HTTP)\n\n"
            + markdown_table(
                ["offered /s", "achieved /s", "steady /s", "p50 ms", "p95 ms", "p99 ms",
                 "statuses", "host slow %", "p99 ms fast phases (% of requests)"],
                [[b["target_rps"], b["achieved_rps"], b.get("steady_rps", "-"), b["p50_ms"],
                  b["p95_ms"], b["p99_ms"], b["statuses"],
                  round(100 * b["host_speed"]["slow_share"]), _fast_cell(b)] for b in rows],
            ) + "\n\nachieved: all answers / time to the last one; steady: answers per second "
            "from the step's first second to its end (the last answers' latency not counted "
            "as lost rate); host slow %: share of the step the cores ran in the hypervisor's "
            f"slow phase (a fixed piece of work >= {SLOW}x its fast {fast_us:.0f} µs of CPU; "
            "`bench.hostspeed`); fast phases: only the requests sent in a second that, like "
            "the second before it, had every sample fast (a diagnostic of the code apart "
            "from the host, not the target's measure)\n\ntargets: >= 1,000 bookings/s "
            "sustained; p99 <= 50 ms at 500/s",
            "## Where a booking's time goes (mean ms per hop, from the API's metrics)\n\n"
            "produce: API send until the broker acked (acks=all); decide: request to the "
            "processor producing its decision; deliver: processor commit + the API's "
            "read-committed fetch; render: decision to HTTP answer; the processor's "
            "transactions during the step, and the commands each carried\n\n" + markdown_table(
                ["offered /s", *HOPS, "transactions /s", "commands / transaction"],
                [[b["target_rps"], *(b["hops_mean_ms"].get(h, "-") for h in HOPS),
                  b["transactions_per_s"], b["records_per_transaction"]] for b in steps],
            ),
            "## Where the two cores go (CPU ms per booking, per process)\n\n"
            "the load generator is this benchmark's own process\n\n" + markdown_table(
                ["offered /s", *CPU_PROCESSES, "total"],
                [[b["target_rps"], *(b["cpu_ms_per_booking"].get(p, "-") for p in CPU_PROCESSES),
                  b["cpu_ms_per_booking"].get("total", "-")] for b in rows],
            ),
            "## How far behind the projections were (age of each batch's oldest record when "
            "the projector took it)\n\n"
            "documents: booking documents in MongoDB; views: availability in Redis; mean, and "
            "the bucket bound every batch of the step stayed under (the projector yields the "
            "CPU while its batches are under 1 s old, and takes its share back over 2 s)\n\n"
            + markdown_table(
                ["offered /s", *(f"{name} {stat}" for name in PROJECTIONS.values()
                                 for stat in ("mean ms", "all <= s"))],
                [[b["target_rps"], *(b["projection_age"].get(group, {}).get(stat, "-")
                                     for group in PROJECTIONS for stat in ("mean_ms", "max_le_s"))]
                 for b in rows],
            ),
        ])  # fmt: skip
        return section, {"open_loop": steps, "max": saturated}

    def measure_processor(self) -> tuple[str, dict[str, Any]]:
        settings = self.endpoints.settings(
            ServiceSettings, service_name="bench", environment="test"
        )
        if not self.warmed:
            self.warm_up()  # a cold broker's JIT would cost the first rate a tenth of a core
        alone, processor = [], self.urls["booking-processor"]
        for rate in [int(r) for r in self.args.processor_rates.split(",")]:
            _progress(f"processor alone: commands into Kafka at {rate}/s for {self.args.seconds}s")
            before, started = _transactions(processor), time.perf_counter()
            step = asyncio.run(processor_bench.open_loop(
                settings, rate, self.args.seconds, self.slots, f"{self.run_id}-p{rate}"
            ))  # fmt: skip
            step.update(_transaction_rates(before, _transactions(processor), started))
            alone.append(step)
            _drain(processor)
        section = (
            "## Availability processor alone (command produced > decision visible, read "
            "committed)\n\n" + markdown_table(
                ["offered /s", "decided /s", "p50 ms", "p95 ms", "p99 ms", "max ms",
                 "undecided", "transactions /s", "commands / transaction", "outcomes"],
                [[a["target_rps"], a["decided_rps"], a["p50_ms"], a["p95_ms"], a["p99_ms"],
                  a["max_ms"], a["undecided"], a["transactions_per_s"],
                  a["records_per_transaction"], a["outcomes"]] for a in alone],
            ) + "\n\nEach task group (BOOKING_PROCESSOR_TASK_GROUPS) decides what its tasks "
            "received while its previous transaction committed (at most 500 commands), so "
            "batches grow with the load and the transaction rate follows the commit time."
        )  # fmt: skip
        return section, {"alone": alone}

    def measure_decisions(self) -> tuple[str, dict[str, Any]]:
        from bench import decisions  # it seeds this module's bench store (`roster`)

        _progress("processor decisions without Kafka (CPU per command)")
        rows = [decisions.measure(batch) for batch in (1, 10)]
        section = (
            "## The processor's own work per decision (no Kafka, one process)\n\n"
            + markdown_table(
                ["commands per batch", "commands", "confirmed", "CPU µs / command",
                 "bytes out / command"],
                [[r["batch"], r["commands"], r["confirmed"], r["cpu_us_per_command"],
                  r["bytes_per_command"]] for r in rows],
            )
            + "\n\nDecode, decide, the store-day's availability view (once per batch), the "
            "encoded outputs and changelog records: what a task does between fetching and "
            "producing. The rest of the processor's CPU per booking is Kafka client work."
        )  # fmt: skip
        return section, {"decisions": rows}

    def measure_restart(self) -> tuple[str, dict[str, Any]]:
        processor = self.urls["booking-processor"]
        if not self.warmed:
            self.warm_up()  # some state to restore
        rows = []
        for how, wipe in (("local copy, then the changelog after it", False),
                          ("the changelog alone (local copy wiped)", True)):  # fmt: skip
            _progress(f"processor restart from {how}")
            _drain(processor)
            ManagedProcess(PROCESSOR, self.cfg.run_dir / "services" / PROCESSOR).stop()
            if wipe:
                shutil.rmtree(self.cfg.run_dir / "state" / PROCESSOR_APP_ID, ignore_errors=True)
            started = time.perf_counter()
            stack.start_services(
                self.cfg, self.endpoints, port_offset=PORT_OFFSET, only=[PROCESSOR]
            )
            ready_s = time.perf_counter() - started
            restored = _restored_records(processor)
            rows.append({
                "from": how, "ready_s": round(ready_s, 2),
                "restore_s": round(_histogram(processor, "optisync_stream_restore_seconds",
                                              "app")[PROCESSOR_APP_ID]["sum"], 2),
                "local_records": int(restored.get("local", 0)),
                "changelog_records": int(restored.get("changelog", 0)),
                "next_booking": _book_once(self.api, next(self.slots), f"{self.run_id}-rs{wipe}"),
            })  # fmt: skip
        section = (
            "## Processor restart (the state every step before left)\n\n" + markdown_table(
                ["restored from", "start to ready s", "restore s", "records from the copy",
                 "records from the changelog", "next booking"],
                [[r["from"], r["ready_s"], r["restore_s"], r["local_records"],
                  r["changelog_records"], r["next_booking"]] for r in rows],
            ) + "\n\nstart to ready: process start to /readyz (interpreter, consumer group join "
            "and restore); restore: the tables' rebuild alone; next booking: the HTTP status of "
            "a booking made right after (201: decided on the restored state)"
        )  # fmt: skip
        return section, {"restarts": rows}

    def pids(self) -> dict[str, int | None]:
        pids = {name: proc.pid() for name, proc in _named_procs(self.cfg)}
        pids["load generator"] = os.getpid()
        return pids

    def _cpu(self) -> dict[str, float | None]:
        return {name: cpu_seconds(pid) if pid else None for name, pid in self.pids().items()}

    def _cpu_per(self, before: dict[str, float | None], requests: int) -> dict[str, float]:
        after = self._cpu()
        per: dict[str, float] = {}
        for name, used in after.items():
            start = before.get(name)
            if used is not None and start is not None and requests:
                per[name] = round((used - start) * 1000 / requests, 2)
        per["total"] = round(sum(per.values()), 2)
        return per


CPU_PROCESSES = (
    "booking-api", "booking-processor", "booking-projector", "kafka", "redis", "ferretdb",
    "load generator",
)  # fmt: skip


def _named_procs(cfg: infra.InfraConfig) -> Iterator[tuple[str, ManagedProcess]]:
    for name in BOOKING_PATH:
        yield name, ManagedProcess(name, cfg.run_dir / "services" / name)
    for proc in infra.managed(cfg):
        yield proc.name, proc


def _metrics(url: str) -> list[str]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        return str(resp.read().decode()).splitlines()


def _consumed(processor: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in _metrics(processor)
        if line.startswith("optisync_events_consumed_total")
    )


def _histogram(url: str, name: str, label: str) -> dict[str, dict[str, float]]:
    """A histogram from a service's /metrics, per value of `label`: its `sum`, `count` and
    cumulative count per bucket bound (`le`)."""
    series: dict[str, dict[str, float]] = {}
    for line in _metrics(url):
        if not line.startswith(name + "_"):
            continue
        sample, _, value = line.rpartition(" ")
        kind = sample.split("{", 1)[0].removeprefix(name + "_")
        if kind not in ("bucket", "sum", "count"):
            continue  # `_created`
        key = sample.split(f'{label}="', 1)[1].split('"', 1)[0]
        if kind == "bucket":
            kind = sample.split('le="', 1)[1].split('"', 1)[0]
        series.setdefault(key, {})[kind] = float(value)
    return series


def _restored_records(processor: str) -> dict[str, float]:
    """Records the processor's restores applied so far, per source (local, changelog)."""
    counts: dict[str, float] = {}
    for line in _metrics(processor):
        if line.startswith("optisync_stream_restored_records_total{"):
            sample, _, value = line.rpartition(" ")
            source = sample.split('source="', 1)[1].split('"', 1)[0]
            counts[source] = counts.get(source, 0.0) + float(value)
    return counts


def _book_once(api: str, slot: tuple[str, str, str], key: str) -> int:
    async def book() -> int:
        client = HttpLoadClient(api)
        try:
            return await _post(client, slot, key)
        finally:
            await client.close()

    return asyncio.run(book())


def _transactions(processor: str) -> tuple[float, float]:
    """(transactions, input records in them) the processor's tasks have committed so far."""
    apps = _histogram(processor, "optisync_stream_batch_records", "app").values()
    return sum(a.get("count", 0.0) for a in apps), sum(a.get("sum", 0.0) for a in apps)


def _transaction_rates(
    before: tuple[float, float], after: tuple[float, float], started: float
) -> dict[str, float | None]:
    transactions, records = after[0] - before[0], after[1] - before[1]
    return {
        "transactions_per_s": round(transactions / (time.perf_counter() - started), 1),
        "records_per_transaction": round(records / transactions, 1) if transactions else None,
    }


PROJECTIONS = {"booking-projector": "documents", "booking-projector-views": "views"}


def _batch_ages(projector: str) -> dict[str, dict[str, float]]:
    """Per projector group, its batch-age histogram."""
    return _histogram(projector, "optisync_projection_batch_age_seconds", "group")


def _age_summary(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
) -> dict[str, dict[str, float | str]]:
    """Per group, the step's mean batch age and the smallest bucket bound all batches met."""
    summary: dict[str, dict[str, float | str]] = {}
    for group, totals in after.items():
        start = before.get(group, {})
        count = totals.get("count", 0.0) - start.get("count", 0.0)
        if count <= 0:
            continue
        mean_ms = (totals.get("sum", 0.0) - start.get("sum", 0.0)) / count * 1000
        bounds = sorted((le for le in totals if le not in ("sum", "count")), key=float)
        # the smallest bucket holding all of the step's batches ("+Inf" at the latest)
        max_le = next(le for le in bounds if totals[le] - start.get(le, 0.0) >= count)
        summary[group] = {"mean_ms": round(mean_ms, 1), "max_le_s": max_le}
    return summary


HOPS = ("produce", "decide", "deliver", "render")


def _hops(api: str) -> dict[str, tuple[float, float]]:
    """(sum seconds, count) per hop of the API's command-hop histogram."""
    hops = _histogram(api, "optisync_booking_command_hop_seconds", "hop")
    return {hop: (h.get("sum", 0.0), h.get("count", 0.0)) for hop, h in hops.items()}


def _hop_means(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, float]:
    means = {}
    for hop, (total, count) in after.items():
        total0, count0 = before.get(hop, (0.0, 0.0))
        if count > count0:
            means[hop] = round((total - total0) / (count - count0) * 1000, 1)
    return means


def _drain(processor: str, quiet_s: float = 2.0, limit_s: float = 300.0) -> None:
    """Wait until the processor has consumed nothing new for `quiet_s` (its queue is empty)."""
    deadline = time.monotonic() + limit_s
    last = _consumed(processor)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = _consumed(processor)
        if now == last:
            return
        _progress(f"draining the processor's backlog ({now:.0f} events consumed)")
        last = now


if __name__ == "__main__":
    sys.exit(main())
