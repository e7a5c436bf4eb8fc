"""Pid-file process management for the local platform.

Every process we start gets its own directory under `.run/<profile>/<name>/` holding `pid`,
`started` (the kernel's start time of that pid) and `log`. `stop` only signals a pid whose start
time still matches, so a recycled pid never kills someone else's process. (Command lines are no
good for this: redis-server rewrites its own process title.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ManagedProcess:
    name: str
    home: Path  # .run/<profile>/<name>

    @property
    def pid_file(self) -> Path:
        return self.home / "pid"

    @property
    def log_file(self) -> Path:
        return self.home / "log"

    def pid(self) -> int | None:
        """The pid we started, if that process is still alive and still ours."""
        try:
            pid = int(self.pid_file.read_text().strip())
            expected = (self.home / "started").read_text().strip()
        except (OSError, ValueError):
            return None
        return pid if _start_time(pid) == expected and _alive(pid) else None

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> int:
        """Start `argv` in a process group of its own (`stop()` signals the whole tree).

        The group stays in our session on purpose. A session of its own would be a scheduling
        group of its own wherever the kernel's autogroups are on (the default): the cores
        would then be shared out per session, Kafka's dozens of threads getting what one
        Python service gets, and a nice value would count only within its own session.
        Shared per thread, the p99 at 500 bookings/s was 55-72 ms instead of 75-102 (three
        rounds of `bench.run` in one window; README, Benchmarks, "Scheduling on one box").
        """
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                process_group=0,
            )
        (self.home / "cmd").write_text(" ".join(argv))
        (self.home / "started").write_text(_start_time(proc.pid) or "")
        self.pid_file.write_text(str(proc.pid))
        return proc.pid

    def stop(self, timeout: float = 20.0) -> bool:
        """SIGTERM the process group, then SIGKILL after `timeout`. True if something stopped."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            _signal_group(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: clock ticks since boot when the process started."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        # A zombie child of ours still "exists": reap it when we can.
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    proc: ManagedProcess | None = None,
    interval: float = 0.25,
) -> None:
    """Poll `check` until it is true; fail with the process log if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and not proc.is_running():
            raise RuntimeError(f"{what} exited during startup; log tail:\n{proc.tail()}")
        time.sleep(interval)
    tail = f"; log tail:\n{proc.tail()}" if proc is not None else ""
    raise TimeoutError(f"{what} not healthy after {timeout:.0f}s{tail}")
