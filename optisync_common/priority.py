"""CPU priority for work off the request path: yield the cores while keeping up.

A projection (booking documents, availability views) is applied after the decision it shows, so
while it keeps up it can wait for a core at the price of a little freshness; a request on the
booking path cannot wait without its customer waiting too. On a box where both share the cores
(the local platform), the projector's wake-ups otherwise queue in front of the requests'. So a
process running such work drops to a lower priority (`nice`) while the records it applies are
fresh, and takes its full share again as soon as they get old: it can never fall behind for
good.

Taking the share back means raising the priority, which Linux allows only with CAP_SYS_NICE or
a RLIMIT_NICE that reaches the old value. Without either, a process never lowers it at all
(`Yielding.enabled`): a priority it could not take back would be a lag with no bound.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from dataclasses import dataclass, field

from optisync_common.logging import get_logger

log = get_logger(__name__)

# How old (seconds) the oldest record of a batch may be for the process to keep yielding, and
# how old it must get before the process takes its full share again; between the two, nothing
# changes. A batch's oldest record waited through about one round of the projector (apply,
# commit, 0.1 s linger) and part of the one before: at 500 bookings/s on two cores, without
# yielding, batches were 0.3-0.5 s old on average and all under 1 s (`bench.run`'s last table).
FRESH_S = 1.0
STALE_S = 2.0
CAP_SYS_NICE = 23  # the capability's bit in /proc/self/status CapEff


@dataclass
class PriorityGuard:
    """When to yield (pure): fed the age of what each source applied last, it yields while
    every source is fresh and stops yielding once any is stale."""

    fresh_s: float = FRESH_S
    stale_s: float = STALE_S
    yielding: bool = False
    _ages: dict[str, float] = field(default_factory=dict)

    def observe(self, source: str, age_s: float) -> bool | None:
        """Record a source's latest batch age; the new state when it changes, else None."""
        self._ages[source] = age_s
        oldest = max(self._ages.values())
        if self.yielding and oldest > self.stale_s:
            self.yielding = False
            return False
        if not self.yielding and oldest <= self.fresh_s:
            self.yielding = True
            return True
        return None


def thread_ids() -> list[int]:
    """This process's threads (Linux): a nice value belongs to a thread, not a process."""
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return [0]  # elsewhere: the calling thread


def set_nice(nice: int) -> None:
    """Set every current thread's nice value (threads started later inherit their starter's)."""
    for tid in thread_ids():
        try:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        except ProcessLookupError:
            continue  # the thread ended meanwhile


def may_raise_priority_to(nice: int) -> bool:
    """Whether this process may lower its nice value back to `nice` once it raised it."""
    if _has_capability(CAP_SYS_NICE):
        return True
    soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    # RLIMIT_NICE r allows nice values down to 20 - r.
    return soft == resource.RLIM_INFINITY or 20 - soft <= nice


def _has_capability(bit: int) -> bool:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> bit & 1)
    except OSError:
        pass
    return False


class Yielding:
    """A process's priority driven by a `PriorityGuard`: `yield_nice` while every source is
    fresh, its starting nice value otherwise. Off (never changes anything) when `yield_nice`
    is no lower priority than the start, or the process could not take the priority back."""

    def __init__(
        self,
        yield_nice: int,
        *,
        guard: PriorityGuard | None = None,
        apply: Callable[[int], None] = set_nice,
        may_raise: Callable[[int], bool] = may_raise_priority_to,
    ) -> None:
        self.normal_nice = os.getpriority(os.PRIO_PROCESS, 0)
        self.yield_nice = yield_nice
        self.guard = guard or PriorityGuard()
        self._apply = apply
        self.enabled = yield_nice > self.normal_nice and may_raise(self.normal_nice)
        if yield_nice > self.normal_nice and not self.enabled:
            log.info("cpu_yielding_off", why="could not raise the priority back")

    def observe(self, source: str, age_s: float) -> None:
        """The age (seconds) of the oldest record in the batch `source` just applied."""
        if not self.enabled:
            return
        change = self.guard.observe(source, age_s)
        if change is None:
            return
        nice = self.yield_nice if change else self.normal_nice
        self._apply(nice)
        log.info("cpu_priority_changed", nice=nice, yielding=change, oldest_age_s=age_s)
