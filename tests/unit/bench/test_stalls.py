import os
import time

from bench.stalls import CpuSampler, Episode, cores_by_spell, episodes, slow_buckets
from bench.stats import markdown_table


def test_slow_requests_sent_close_together_form_one_episode():
    sent = [(0.00, 10.0), (0.10, 60.0), (0.25, 80.0), (0.30, 20.0), (0.41, 55.0), (1.00, 70.0)]
    assert episodes(sent, threshold_ms=50) == [
        Episode(start_s=0.10, end_s=0.41, requests=3, worst_ms=80.0),
        Episode(start_s=1.00, end_s=1.00, requests=1, worst_ms=70.0),
    ]
    assert episodes(sent, threshold_ms=100) == []


def test_cores_are_compared_before_slow_buckets_against_calm_ones():
    # A process burns a whole core from 0.3 s to 0.5 s; a request sent at 0.55 s is slow.
    samples = []
    used = 0.0
    for k in range(10):  # every 0.1 s
        t = k / 10
        samples.append((t, {"kafka": used, "api": t * 0.5, "gone": None}))
        used += 0.1 if 0.3 <= t < 0.5 else 0.0
    buckets = slow_buckets([(0.55, 90.0), (0.2, 5.0)], threshold_ms=50)
    assert buckets == {5}

    cores = cores_by_spell(samples, buckets)

    assert cores["before slow"] == {"kafka": 1.0, "api": 0.5}  # the intervals from 0.3 and 0.4
    assert cores["calm"] == {"kafka": 0.0, "api": 0.5}  # the slow bucket itself is neither
    assert cores["all"]["kafka"] == round(2 / 9, 2)


def test_markdown_tables_pad_their_columns():
    assert markdown_table(["a", "bb"], [[1, 2.5], ["long", "-"]]).splitlines() == [
        "| a    | bb  |",
        "| ---- | --- |",
        "| 1    | 2.5 |",
        "| long | -   |",
    ]


def test_the_sampler_reads_a_live_process_and_stops():
    sampler = CpuSampler({"me": os.getpid(), "never started": None})
    sampler.start()
    deadline = time.monotonic() + 5
    while len(sampler.samples) < 2 and time.monotonic() < deadline:
        sum(range(100_000))  # some CPU to read
    sampler.stop()

    assert not sampler.is_alive()
    assert len(sampler.samples) >= 2
    (t0, first), (t1, last) = sampler.samples[0], sampler.samples[-1]
    assert set(first) == {"me"} and t1 > t0
    assert first["me"] is not None and last["me"] is not None and last["me"] >= first["me"]
