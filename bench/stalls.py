"""Where the booking p99 comes from: one open-loop step with every process's CPU sampled beside
each request's latency (a diagnostic; `make bench` does not run it).

`python -m bench.stalls --rate 500 --seconds 60` books at a fixed rate on the bench platform
(as `bench.run` sets it up) while a thread reads each process's CPU time every 50 ms. It
reports the slow episodes (requests over `--threshold` ms, grouped by when they were sent) and
how many cores each process used just before them against the calm spells: a periodic stall of
one process (a GC, a flush, a compaction) would stand out there, queueing for busy cores would
not.
"""

from __future__ import annotations

import argparse
import itertools
import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import uvloop

from bench.hostspeed import SLOW, HostSpeedProbe, fast_phase_us, slow_share
from bench.platform import cpu_seconds, save_results
from bench.run import SENT, Bench, close_platform, days_needed, open_loop, open_platform
from bench.stats import markdown_table, percentiles

SAMPLE_S = 0.05
BUCKET_S = 0.1  # latencies are judged per 100 ms of send time
LEAD_S = 0.2  # "before" an episode: the CPU of the buckets this long before a slow one


@dataclass(frozen=True, slots=True)
class Episode:
    start_s: float  # send time of its first slow request, from the step's start
    end_s: float
    requests: int
    worst_ms: float


def episodes(
    sent: Iterable[tuple[float, float]], threshold_ms: float, gap_s: float = 0.2
) -> list[Episode]:
    """Requests over `threshold_ms` (`sent`: send time in s, latency in ms), grouped while each
    was sent within `gap_s` of the previous one."""
    found: list[Episode] = []
    for at, latency in sorted(s for s in sent if s[1] > threshold_ms):
        last = found[-1] if found else None
        if last is not None and at - last.end_s < gap_s:
            found[-1] = Episode(last.start_s, at, last.requests + 1, max(last.worst_ms, latency))
        else:
            found.append(Episode(at, at, 1, latency))
    return found


def cores_by_spell(
    samples: Sequence[tuple[float, Mapping[str, float | None]]],
    slow_buckets: set[int],
) -> dict[str, dict[str, float]]:
    """Mean cores each process used over the sampling intervals that started just before a slow
    bucket (`before slow`), in no slow bucket nor just before one (`calm`), and over all.
    `samples`: (time from the step's start in s, CPU seconds so far per process)."""
    spells: dict[str, list[dict[str, float]]] = {"all": [], "before slow": [], "calm": []}
    lead = round(LEAD_S / BUCKET_S)
    for (t0, cpu0), (t1, cpu1) in itertools.pairwise(samples):
        rates = {
            name: (after - before) / (t1 - t0)
            for name, before in cpu0.items()
            if before is not None and (after := cpu1.get(name)) is not None and t1 > t0
        }
        bucket = _bucket(t0)
        spells["all"].append(rates)
        if any(bucket + k in slow_buckets for k in range(1, lead + 1)):
            spells["before slow"].append(rates)
        elif bucket not in slow_buckets:
            spells["calm"].append(rates)
    return {spell: _mean(rows) for spell, rows in spells.items()}


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    names = sorted({name for row in rows for name in row})
    return (
        {n: round(sum(r.get(n, 0.0) for r in rows) / len(rows), 2) for n in names} if rows else {}
    )


def slow_buckets(sent: Iterable[tuple[float, float]], threshold_ms: float) -> set[int]:
    return {_bucket(at) for at, latency in sent if latency > threshold_ms}


def _bucket(at: float) -> int:
    return math.floor(at / BUCKET_S + 1e-9)  # 0.3 s is in bucket 3, float division or not


class CpuSampler(threading.Thread):
    """Every process's CPU seconds so far, every `SAMPLE_S`, with the time read."""

    def __init__(self, pids: Mapping[str, int | None]) -> None:
        super().__init__(daemon=True)
        self.pids = {name: pid for name, pid in pids.items() if pid}
        self.samples: list[tuple[float, dict[str, float | None]]] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            at = time.perf_counter()
            self.samples.append((at, {n: cpu_seconds(p) for n, p in self.pids.items()}))
            self._done.wait(SAMPLE_S)

    def stop(self) -> None:
        self._done.set()
        self.join()


def measure(
    bench: Bench, rate: int, seconds: int, threshold_ms: float
) -> tuple[str, dict[str, Any]]:
    bench.warm_up()
    sampler = CpuSampler(bench.pids())
    sampler.start()
    with HostSpeedProbe() as probe:
        step = uvloop.run(open_loop(bench.api, rate, seconds, bench.slots, f"{bench.run_id}-st"))
    sampler.stop()
    sent: list[tuple[float, float]] = step.pop(SENT)
    start = min(at for at, _ in sent)
    relative = [(at - start, latency) for at, latency in sent]
    found = episodes(relative, threshold_ms)
    cores = cores_by_spell(
        [(at - start, cpu) for at, cpu in sampler.samples], slow_buckets(relative, threshold_ms)
    )
    fast_us = fast_phase_us(probe.samples)
    slow_at = [at - start for at, us in probe.timed if us >= SLOW * fast_us]
    (p50, p99) = percentiles((latency for _, latency in relative), 0.5, 0.99)
    title = (
        f"# Where the p99 comes from ({bench.run_id})\n\n{rate}/s for {seconds}s: p50 {p50} ms, "
        f"p99 {p99} ms; {sum(e.requests for e in found)} requests over {threshold_ms:g} ms in "
        f"{len(found)} episodes; host slow {slow_share(probe.samples, fast_us):.0%} of the step "
        "(`bench.hostspeed`)"
    )
    report = _report(title, threshold_ms, cores, found, slow_at)
    return report, {"step": step, "episodes": [asdict(e) for e in found], "cores": cores}


def _report(
    title: str,
    threshold_ms: float,
    cores: dict[str, dict[str, float]],
    found: list[Episode],
    slow_at: list[float],
) -> str:
    names = sorted(cores["all"])
    worst = sorted(found, key=lambda e: e.worst_ms, reverse=True)[:15]
    return "\n\n".join([
        title,
        "## Cores used per process\n\nbefore slow: the 100 ms buckets up to "
        f"{LEAD_S * 1000:.0f} ms before a bucket with a request over {threshold_ms:g} ms; calm: "
        "neither slow nor before one\n\n" + markdown_table(
            ["spell", *names],
            [[spell, *(row.get(n, "-") for n in names)] for spell, row in cores.items()],
        ),
        "## The worst episodes\n\nhost slow: a host-speed sample in a slow phase from 0.5 s "
        "before the episode to its end\n\n" + markdown_table(
            ["sent from s", "to s", "requests", "worst ms", "host slow"],
            [[round(e.start_s, 2), round(e.end_s, 2), e.requests, round(e.worst_ms, 1),
              any(e.start_s - 0.5 <= t <= e.end_s for t in slow_at)] for e in worst],
        ),
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=int, default=500, help="bookings per second (open loop)")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--threshold", type=float, default=50.0, help="slow request, ms")
    parser.add_argument("--stores", type=int, default=40)
    parser.add_argument("--keep", action="store_true", help="leave the bench platform running")
    args = parser.parse_args(argv)
    if args.rate < 1 or args.seconds < 1:
        parser.error("--rate and --seconds must be at least 1")
    # The fields `bench.run`'s platform reads, for this one open-loop step.
    args.rates, args.processor_rates, args.days = str(args.rate), "", 28
    args.keep_data, args.clients = False, 0
    args.days = days_needed(args, ["bookings"])
    bench = open_platform(args)
    try:
        report, data = measure(bench, args.rate, args.seconds, args.threshold)
    finally:
        close_platform(bench)
    print("\n" + report)
    save_results(bench.run_id, "stalls", report, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
