"""Work off the request path yields the CPU while it keeps up, and takes it back when behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from optisync_common.priority import PriorityGuard, Yielding, may_raise_priority_to


def test_fresh_batches_yield_and_stale_ones_take_the_share_back():
    guard = PriorityGuard(fresh_s=0.5, stale_s=1.0)
    assert guard.observe("docs", 0.2) is True
    assert guard.observe("docs", 0.3) is None  # already yielding
    assert guard.observe("docs", 0.8) is None  # between the two: no flapping
    assert guard.observe("docs", 1.5) is False
    assert guard.observe("docs", 0.8) is None  # not fresh enough to yield again yet
    assert guard.observe("docs", 0.4) is True


def test_one_source_behind_keeps_the_process_from_yielding():
    guard = PriorityGuard(fresh_s=0.5, stale_s=1.0)
    assert guard.observe("views", 3.0) is None  # starts at its full share
    assert guard.observe("docs", 0.1) is None  # views are still behind
    assert guard.observe("views", 0.2) is True
    assert guard.observe("docs", 2.0) is False


def _recording(may_raise: bool, yield_nice: int = 19) -> tuple[Yielding, list[int]]:
    applied: list[int] = []
    yielding = Yielding(yield_nice, apply=applied.append, may_raise=lambda nice: may_raise)
    return yielding, applied


def test_it_sets_the_yield_nice_while_fresh_and_its_own_nice_when_behind():
    yielding, applied = _recording(may_raise=True)
    normal = os.getpriority(os.PRIO_PROCESS, 0)
    for age in (0.1, 0.2, 5.0, 3.0, 0.1):
        yielding.observe("docs", age)
    assert applied == [19, normal, 19]


def test_it_never_yields_what_it_could_not_take_back():
    yielding, applied = _recording(may_raise=False)
    for age in (0.1, 5.0, 0.1):
        yielding.observe("docs", age)
    assert not yielding.enabled
    assert applied == []


def test_a_yield_nice_no_lower_than_the_current_one_is_off():
    yielding, applied = _recording(may_raise=True, yield_nice=0)
    yielding.observe("docs", 0.1)
    assert applied == []


# Run in a child process: the nice values must not stick to the test runner's own threads.
CHILD = textwrap.dedent(
    """
    import json, os, threading
    from optisync_common.priority import Yielding
    started = threading.Event(); done = threading.Event()
    def worker():
        started.set(); done.wait()
    t = threading.Thread(target=worker); t.start(); started.wait()
    def nices():
        return sorted({os.getpriority(os.PRIO_PROCESS, int(tid))
                       for tid in os.listdir("/proc/self/task")})
    y = Yielding(10)
    seen = [y.enabled, nices()]
    y.observe("docs", 0.1)
    seen.append(nices())
    y.observe("docs", 9.0)
    seen.append(nices())
    done.set(); t.join()
    print(json.dumps(seen))
    """
)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="Linux threads only")
def test_every_thread_of_the_process_follows():
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True
    ).stdout.splitlines()  # its logs, then what it saw
    base = os.getpriority(os.PRIO_PROCESS, 0)
    if may_raise_priority_to(base):
        assert json.loads(out[-1]) == [True, [base], [10], [base]]
    else:  # e.g. a developer's shell without CAP_SYS_NICE: nothing changes
        assert json.loads(out[-1]) == [False, [base], [base], [base]]
