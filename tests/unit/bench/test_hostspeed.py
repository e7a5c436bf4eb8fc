import time

from bench.hostspeed import HostSpeedProbe, fast_phase_us, slow_share


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
