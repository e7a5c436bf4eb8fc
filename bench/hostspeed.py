"""How fast the machine's cores were while a step ran: a fixed piece of work, timed in CPU time.

On this project's VMs the same work flips between two speeds at random, idle or busy, each vCPU
on its own (0.9 vs 1.55 ms for the loop below, flipping within seconds): the hypervisor's doing,
shown nowhere else (steal stays 0). Run-queue waits do not count in a thread's CPU time, so
our own load barely moves the figure; a step measured through more slow phases reads a worse
p99 for the same code. `make bench` reports, per step, the share of samples in a slow phase.

`python -m bench.hostspeed [interval_s]` prints one sample (µs of CPU for the work) per
interval until stopped; `HostSpeedProbe` runs it beside a step at the lowest priority, with
each sample's time, so that a step's latencies can also be read over its fast phases only
(`fast_windows`): what the same code gives on a host that keeps its speed.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

SLOW = 1.3  # a sample this many times the fast phases' time is in a slow phase
WINDOW_S = 1.0  # `fast_windows`: a second holds about three samples
TIMED = "--timed"  # print each sample's time.perf_counter() before it


def fixed_work() -> int:
    total = 0
    for i in range(20_000):
        total += i * i % 7
    return total


def sample_us() -> float:
    started = time.thread_time_ns()
    fixed_work()
    return (time.thread_time_ns() - started) / 1000


def fast_phase_us(samples: Sequence[float]) -> float:
    """The work's time when the host is fast: the fastest decile (slow phases are the
    minority, and nothing makes the work faster than the core allows); 0 without samples."""
    ordered = sorted(samples)
    return ordered[len(ordered) // 10] if ordered else 0.0


def slow_share(samples: Sequence[float], fast_us: float) -> float:
    """Share of samples that ran in a slow phase, 0..1."""
    return sum(1 for s in samples if s >= SLOW * fast_us) / len(samples) if samples else 0.0


def fast_windows(
    timed: Iterable[tuple[float, float]], fast_us: float, window_s: float = WINDOW_S
) -> set[int]:
    """The windows (`int(t // window_s)`) whose samples all ran at the fast phases' speed:
    windows without a sample (the probe, at nice 19, waits for idle cores) are not among
    them, nor is one with a single slow sample."""
    seen: set[int] = set()
    slow: set[int] = set()
    for at, us in timed:
        window = int(at // window_s)
        seen.add(window)
        if us >= SLOW * fast_us:
            slow.add(window)
    return seen - slow


def in_fast_phase(at: float, windows: set[int], window_s: float = WINDOW_S) -> bool:
    """Whether a request sent at `at` met a fast host: its window and the one before it were
    fast (a queue built up in a slow phase takes a moment to drain)."""
    window = int(at // window_s)
    return window in windows and window - 1 in windows


@dataclass
class HostSpeedProbe:
    """Samples the host's speed in a separate process (nice 19: it takes about 0.4% of one
    core and only runs when nothing else wants it) while the `with` block runs."""

    interval_s: float = 0.25
    samples: list[float] = field(default_factory=list)
    timed: list[tuple[float, float]] = field(default_factory=list)  # (perf_counter, µs)
    _proc: subprocess.Popen[str] | None = field(default=None, init=False, repr=False)

    def __enter__(self) -> HostSpeedProbe:
        self._proc = subprocess.Popen(
            ["nice", "-n", "19", sys.executable, "-m", "bench.hostspeed", str(self.interval_s),
             TIMED],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._proc is not None
        self._proc.terminate()
        out, _ = self._proc.communicate(timeout=10)
        # time.perf_counter() is CLOCK_MONOTONIC here: one clock for every process.
        self.timed = [
            (float(at), float(us)) for at, us in (line.split() for line in out.splitlines())
        ]
        self.samples = [us for _, us in self.timed]

    def summary(self, fast_us: float) -> dict[str, float]:
        return {
            "median_us": round(statistics.median(self.samples), 1) if self.samples else 0.0,
            "slow_share": round(slow_share(self.samples, fast_us), 3),
            "samples": len(self.samples),
        }


def main() -> None:
    args = sys.argv[1:]
    timed = TIMED in args
    numbers = [a for a in args if a != TIMED]
    interval = float(numbers[0]) if numbers else 0.25
    try:
        while True:
            at = time.perf_counter()
            us = round(sample_us(), 1)
            print(f"{at:.3f} {us}" if timed else us, flush=True)
            time.sleep(interval)
    except (KeyboardInterrupt, BrokenPipeError):
        pass


if __name__ == "__main__":
    main()
