import time

from bench.hostspeed import (
    HostSpeedProbe,
    fast_phase_us,
    fast_windows,
    in_fast_phase,
    slow_share,
)


def test_the_fast_phase_is_the_fastest_decile_and_slow_samples_are_counted_against_it():
    samples = [900.0] * 7 + [1550.0] * 3  # three of ten samples in a slow phase
    fast = fast_phase_us(samples)
    assert fast == 900.0
    assert slow_share(samples, fast) == 0.3
    assert slow_share([1000.0, 1100.0], fast) == 0.0  # within 1.3x: noise, not a phase
    assert slow_share([], fast) == 0.0
    assert fast_phase_us([]) == 0.0  # a probe that never ran: no reference, no slow share


def test_the_probe_samples_the_fixed_work_while_the_block_runs():
    with HostSpeedProbe(interval_s=0.05) as probe:
        time.sleep(2.0)
    assert len(probe.samples) >= 3  # a busy machine may take a second to start the probe
    assert all(s > 0 for s in probe.samples)
    summary = probe.summary(fast_phase_us(probe.samples))
    assert summary["samples"] == len(probe.samples)
    assert summary["median_us"] >= fast_phase_us(probe.samples)
    assert [us for _, us in probe.timed] == probe.samples
    times = [at for at, _ in probe.timed]
    assert times == sorted(times) and times[-1] <= time.perf_counter()  # one clock for all


def test_a_window_is_fast_only_when_every_sample_in_it_was():
    timed = [
        (10.1, 900.0), (10.6, 950.0),  # window 10: fast
        (11.2, 900.0), (11.7, 1550.0),  # window 11: one slow sample makes it slow
        (12.3, 1000.0),  # window 12: fast; window 13 has no sample
        (14.0, 900.0), (14.9, 1100.0),  # window 14: fast (1100 is within 1.3x)
        (15.5, 920.0),
    ]  # fmt: skip
    windows = fast_windows(timed, fast_us=900.0)
    assert windows == {10, 12, 14, 15}
    # A request meets a fast host when its second and the one before were fast.
    assert not in_fast_phase(10.5, windows)  # window 9 unknown
    assert not in_fast_phase(12.5, windows)  # after the slow window 11
    assert not in_fast_phase(14.5, windows)  # after window 13, which had no sample
    assert in_fast_phase(15.9, windows)
    assert fast_windows([], fast_us=900.0) == set()
