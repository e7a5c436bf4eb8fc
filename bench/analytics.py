"""`python -m bench.analytics`: how many facts per second the analytics aggregator sustains, and
how long an event takes to become visible to the dashboard.

Starts (or reuses) the bench infrastructure (profile `bench`, ports + 2000), then the analytics
worker and the analytics API as their own processes (their own MongoDB database and consumer
group, starting at the end of the topics, so earlier history is not replayed), and measures:

1. throughput: N BookingFacts published at once to `booking.facts.v1`; the time from the
   first send until the API reports all N (facts/s, everything inside: Kafka, decode, event-id
   claims, KPI document writes, offset commits, the API's read);
2. the same N facts again (a replay: every event id already counted): duplicates/s, and the
   API must still report N;
3. latency: facts published open loop at a fixed rate; each fact's *scheduled* send time ->
   the API's count including it (polled every 10 ms). The dashboard page polls the API every
   `ANALYTICS_DASHBOARD_REFRESH_MS` (500 ms), which adds 0-500 ms (250 ms on average) on screen.

`python -m bench.analytics [--facts 20000] [--rate 50] [--seconds 10] [--profile bench
--port-offset 2000]`. Results are printed and saved under bench/results/.
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
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.platform import bench_infra, save_results
from bench.stats import markdown_table, percentiles
from deploy.local import infra
from optisync_common.kafka import make_producer
from optisync_common.settings import ServiceSettings
from schemas.envelope import new_envelope
from schemas.events.base import Channel
from schemas.events.facts import BookingFact, FactKind
from schemas.serde import EncodedMessage, encode
from services.analytics.settings import AnalyticsSettings

REPO = Path(__file__).resolve().parents[1]
DAY = dt.date(2031, 5, 5)
REFRESH_MS = AnalyticsSettings().dashboard_refresh_ms
KINDS = (FactKind.REQUESTED, FactKind.CONFIRMED, FactKind.CHECKED_IN, FactKind.COMPLETED,
         FactKind.CANCELLED, FactKind.NO_SHOW)  # fmt: skip


def _progress(msg: str) -> None:
    print(f"[bench-analytics] {msg}", flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _facts(stores: list[str], n: int, days: int) -> list[EncodedMessage]:
    """n facts, one `requested` in every len(KINDS), over the stores and `days` days."""
    now = dt.datetime.now(dt.UTC)
    out = []
    for i in range(n):
        store = stores[i % len(stores)]
        kind = KINDS[i % len(KINDS)]
        payload = BookingFact(
            fact=kind, store_id=store, region="cn", exam_type="standard", channel=Channel.WEB,
            local_date=DAY + dt.timedelta(days=i % days),
            cancelled_by="customer" if kind is FactKind.CANCELLED else None,
        )  # fmt: skip
        env = new_envelope(payload, region="cn", store_id=store, correlation_id=f"b{i}",
                           occurred_at=now)  # fmt: skip
        out.append(encode(env))
    return out


class Api:
    def __init__(self, base: str, stores: list[str], days: int) -> None:
        self.client = httpx.AsyncClient(base_url=base, timeout=30)
        self.params: list[tuple[str, str | int | float | bool | None]] = [
            ("from", DAY.isoformat()), ("to", (DAY + dt.timedelta(days=days)).isoformat()),
            ("granularity", "total"), ("group_by", "chain"),
            *(("store_id", s) for s in stores),
        ]  # fmt: skip

    async def total(self, counter: str = "requested") -> int:
        rows = (await self.client.get("/v1/kpis", params=self.params)).json()["rows"]
        return int(rows[0]["counts"].get(counter, 0)) if rows else 0

    async def wait_until(self, counter: str, at_least: int, timeout_s: float) -> float:
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            if await self.total(counter) >= at_least:
                return time.perf_counter()
            await asyncio.sleep(0.02)
        raise RuntimeError(f"API never reported {at_least} {counter}")


async def _send_all(producer: Any, messages: list[EncodedMessage]) -> None:
    futures = [
        await producer.send(m.topic, m.value, key=m.key, headers=m.headers) for m in messages
    ]
    await asyncio.gather(*futures)


async def _throughput(producer: Any, api: Api, messages: list[EncodedMessage]) -> dict[str, Any]:
    requested = sum(1 for i in range(len(messages)) if i % len(KINDS) == 0)
    start = time.perf_counter()
    await _send_all(producer, messages)
    sent = time.perf_counter()
    done = await api.wait_until("requested", requested, timeout_s=600)
    await asyncio.sleep(1.0)  # nothing counts twice: the total must not move past N
    return {
        "facts": len(messages),
        "produce_s": round(sent - start, 2),
        "visible_s": round(done - start, 2),
        "facts_per_s": round(len(messages) / (done - start)),
        "requested_seen": await api.total(),
        "requested_expected": requested,
    }


async def _replay(producer: Any, api: Api, messages: list[EncodedMessage]) -> dict[str, Any]:
    """The same facts again; the aggregator's metrics tell when it has seen them all."""
    before = await api.total()
    start = time.perf_counter()
    await _send_all(producer, messages)
    # The API cannot show a duplicate (nothing changes): watch the worker's own counter.
    return {"facts": len(messages), "start": start, "requested_before": before}


async def _latency(
    producer: Any, api: Api, messages: list[EncodedMessage], rate: int
) -> dict[str, Any]:
    """Open loop; messages are all `requested` facts, so the API count orders them."""
    base = await api.total()
    scheduled: list[float] = []
    visible: dict[int, float] = {}
    done = asyncio.Event()

    async def poll() -> None:
        while not done.is_set():
            count = await api.total() - base
            now = time.perf_counter()
            for k in range(len(visible), min(count, len(scheduled))):
                visible[k] = now
            if len(visible) >= len(messages):
                done.set()
            await asyncio.sleep(0.01)

    poller = asyncio.create_task(poll())
    start = time.perf_counter() + 0.2
    for i, m in enumerate(messages):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        scheduled.append(due)
        await producer.send(m.topic, m.value, key=m.key, headers=m.headers)
    try:
        await asyncio.wait_for(done.wait(), 60)
    finally:
        done.set()
        await poller
    latencies = sorted((visible[k] - scheduled[k]) * 1000 for k in visible)
    p50, p90, p99 = percentiles(latencies, 0.50, 0.90, 0.99)
    return {
        "rate_per_s": rate, "events": len(messages), "visible": len(latencies),
        "p50_ms": p50, "p90_ms": p90, "p99_ms": p99,
        "max_ms": round(latencies[-1], 1) if latencies else None,
        "mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
    }  # fmt: skip


async def _worker_counter(url: str, outcome: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{url}/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("optisync_analytics_events_total{") and f'outcome="{outcome}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _wait_counter(url: str, outcome: str, at_least: float) -> None:
    for _ in range(12000):
        if await _worker_counter(url, outcome) >= at_least:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the worker never reached {at_least} {outcome}")


async def _wait_ready(url: str, proc: asyncio.subprocess.Process, log: Path) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            if proc.returncode is not None:
                raise RuntimeError(f"{url} exited, see {log}")
            try:
                if (await client.get(f"{url}/readyz")).is_success:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} not ready, see {log}")


async def _run(args: argparse.Namespace, endpoints: infra.Endpoints, run_id: str) -> dict[str, Any]:
    name = f"analytics-bench-{run_id.lower()}"
    worker_port, api_port = _free_port(), _free_port()
    log = REPO / ".run" / f"bench-analytics-{run_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ, **endpoints.as_env(), "PYTHONPATH": str(REPO), "OPTISYNC_ENV": "test",
        "ANALYTICS_SERVICE_NAME": name, "ANALYTICS_CONSUMER_GROUP": name,
        "ANALYTICS_CONSUMER_OFFSET_RESET": "latest", "ANALYTICS_LOG_LEVEL": "warning",
        "ANALYTICS_WORKER_PORT": str(worker_port), "ANALYTICS_HTTP_PORT": str(api_port),
    }  # fmt: skip
    procs = []
    with log.open("ab") as out:
        for module in ("worker", "http"):
            procs.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", f"services.analytics.entrypoints.{module}",
                env=env, cwd=REPO, stdout=out, stderr=out,
            ))  # fmt: skip
    worker_url, api_url = f"http://127.0.0.1:{worker_port}", f"http://127.0.0.1:{api_port}"
    settings = endpoints.settings(ServiceSettings, service_name="bench-analytics")
    producer = make_producer(settings, linger_ms=10, max_batch_size=512 * 1024)
    await producer.start()
    try:
        await _wait_ready(worker_url, procs[0], log)
        await _wait_ready(api_url, procs[1], log)
        await asyncio.sleep(3)  # the group's first assignment (a `latest` reset)
        days = 14
        stores = [f"bench-{run_id}-{i}" for i in range(args.stores)]
        api = Api(api_url, stores, days)
        _progress("warm-up: 600 facts")
        warm = [f"warm-{run_id}-{i}" for i in range(3)]
        await _send_all(producer, _facts(warm, 600, days))
        await Api(api_url, warm, days).wait_until("requested", 100, 120)

        _progress(f"throughput: {args.facts} facts at once")
        messages = _facts(stores, args.facts, days)
        throughput = await _throughput(producer, api, messages)

        _progress(f"replay: the same {args.facts} facts again")
        dup_before = await _worker_counter(worker_url, "duplicate")
        replay = await _replay(producer, api, messages)
        await _wait_counter(worker_url, "duplicate", dup_before + args.facts)
        replay_s = time.perf_counter() - replay.pop("start")
        replay.update({
            "seconds": round(replay_s, 2), "duplicates_per_s": round(args.facts / replay_s),
            "requested_after": await api.total(),
        })  # fmt: skip

        _progress(f"latency: {args.rate} facts/s for {args.seconds}s")
        lat_stores = [f"lat-{run_id}-{i}" for i in range(args.stores)]
        now = dt.datetime.now(dt.UTC)
        lat_messages = [
            encode(new_envelope(
                BookingFact(fact=FactKind.REQUESTED, store_id=s, region="cn",
                            exam_type="standard", channel=Channel.WEB, local_date=DAY),
                region="cn", store_id=s, correlation_id=uuid.uuid4().hex, occurred_at=now,
            ))
            for i in range(args.rate * args.seconds)
            for s in [lat_stores[i % len(lat_stores)]]
        ]  # fmt: skip
        latency = await _latency(producer, Api(api_url, lat_stores, days), lat_messages,
                                 args.rate)  # fmt: skip
        await api.client.aclose()
    finally:
        await producer.stop()
        for proc in procs:
            proc.terminate()
            await proc.wait()
        await _drop_database(endpoints, f"optisync_{name}")
    return {"throughput": throughput, "replay": replay, "latency": latency}


async def _drop_database(endpoints: infra.Endpoints, name: str) -> None:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(endpoints.mongo_url)
    try:
        await client.drop_database(name)
    finally:
        await client.close()


def report(run_id: str, args: argparse.Namespace, r: dict[str, Any]) -> str:
    t, p, lat = r["throughput"], r["replay"], r["latency"]
    return (
        f"# Analytics benchmark {run_id}\n\nmachine: {os.cpu_count()} cores, Kafka + Redis + "
        "FerretDB + the analytics worker and API + this load generator on one box; "
        f"{args.stores} stores, 14 days.\n\n"
        "Throughput: facts published at once -> the API reports them all (Kafka, decode, "
        "event-id claims, KPI writes, offset commits).\n\n"
        + markdown_table(
            ["facts", "produce s", "visible after s", "facts/s", "requested seen/expected"],
            [[t["facts"], t["produce_s"], t["visible_s"], t["facts_per_s"],
              f"{t['requested_seen']}/{t['requested_expected']}"]])
        + "\n\nReplay of the same facts (every event id already counted):\n\n"
        + markdown_table(["facts", "seconds", "duplicates/s", "requested before -> after"],
                         [[p["facts"], p["seconds"], p["duplicates_per_s"],
                           f"{p['requested_before']} -> {p['requested_after']}"]])
        + "\n\nLatency: a fact's scheduled send time -> the API's count includes it (polled "
        f"every 10 ms). The dashboard page polls every {REFRESH_MS} ms: add 0-{REFRESH_MS} ms "
        "on screen.\n\n"
        + markdown_table(["rate /s", "events", "visible", "p50 ms", "p90 ms", "p99 ms", "max ms"],
                         [[lat["rate_per_s"], lat["events"], lat["visible"], lat["p50_ms"],
                           lat["p90_ms"], lat["p99_ms"], lat["max_ms"]]])
        + "\n"
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="analytics: facts/s and event -> API latency")
    parser.add_argument("--facts", type=int, default=30000)
    parser.add_argument("--rate", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--stores", type=int, default=12)
    parser.add_argument("--profile", default="bench")
    parser.add_argument("--port-offset", type=int, default=2000)
    args = parser.parse_args(argv)
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    with bench_infra(args.profile, args.port_offset) as (_, endpoints):
        results = asyncio.run(_run(args, endpoints, run_id))
    text = report(run_id, args, results)
    print("\n" + text)
    save_results(run_id, "analytics", text, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
