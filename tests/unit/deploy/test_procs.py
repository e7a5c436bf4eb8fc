import os
import sys

from deploy.local.procs import ManagedProcess


def test_start_and_stop_a_process_by_pid_file(tmp_path):
    proc = ManagedProcess("sleeper", tmp_path / "sleeper")
    pid = proc.start([sys.executable, "-c", "import time; time.sleep(60)"])
    assert proc.pid() == pid
    assert proc.stop(timeout=5)
    assert proc.pid() is None
    assert not proc.pid_file.exists()
    assert not proc.stop()  # stopping twice is harmless


def test_process_that_ignores_sigterm_is_killed(tmp_path):
    proc = ManagedProcess("stubborn", tmp_path / "stubborn")
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    proc.start([sys.executable, "-c", code])
    assert proc.stop(timeout=0.5)
    assert proc.pid() is None


def test_a_recycled_pid_is_not_ours(tmp_path):
    proc = ManagedProcess("other", tmp_path / "other")
    proc.start([sys.executable, "-c", "import time; time.sleep(60)"])
    real_start = (proc.home / "started").read_text()
    (proc.home / "started").write_text("1")  # as if the pid now belonged to another process
    assert proc.pid() is None
    (proc.home / "started").write_text(real_start)
    assert proc.stop(timeout=5)


def test_a_process_gets_its_own_group_in_our_session(tmp_path):
    proc = ManagedProcess("grouped", tmp_path / "grouped")
    pid = proc.start([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert os.getpgid(pid) == pid  # stop() signals the whole tree
        # Not a session of its own: that would be a scheduling group of its own (autogroup).
        assert os.getsid(pid) == os.getsid(0)
    finally:
        assert proc.stop(timeout=5)
