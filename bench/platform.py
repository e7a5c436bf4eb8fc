"""What every benchmark does around its measurements: bring up the bench infrastructure and
save the report (`bench/results/<run_id>-<name>.md` and `.json`)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from deploy.local import infra
from optisync_common.topics import apply_registry

RESULTS = Path(__file__).resolve().parent / "results"
Platform = tuple[infra.InfraConfig, infra.Endpoints]


@contextmanager
def bench_infra(
    profile: str, port_offset: int
) -> Iterator[tuple[infra.InfraConfig, infra.Endpoints]]:
    """Kafka, Redis and FerretDB with the topics applied; stopped and emptied afterwards
    unless they were already running (each benchmark of `make bench` starts empty: FerretDB
    scans, so documents one benchmark leaves would slow the next one's reads)."""
    cfg = infra.InfraConfig.from_env(profile, port_offset=port_offset)
    was_running = all(pid is not None for pid in infra.status(cfg).values())
    endpoints = infra.up(cfg)
    asyncio.run(apply_registry(endpoints.kafka_bootstrap))
    try:
        yield cfg, endpoints
    finally:
        if not was_running:
            wipe_data(cfg)


def save_results(run_id: str, name: str, report: str, data: Any) -> Path:
    """The report and its data, each with the code and settings it measured."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    measured = provenance()
    markdown = RESULTS / f"{run_id}-{name}.md"
    markdown.write_text(
        report.rstrip("\n")
        + f"\n\ncode: {measured['code']}; settings from the environment: "
        + (", ".join(f"{k}={v}" for k, v in measured["settings"].items()) or "none")
        + "\n"
    )
    (RESULTS / f"{run_id}-{name}.json").write_text(
        json.dumps({**data, "measured": measured} if isinstance(data, dict) else data, indent=2)
        + "\n"
    )
    print(f"[bench] saved bench/results/{markdown.name}", flush=True)
    return markdown


SETTINGS_PREFIXES = ("BOOKING_", "NOTIFY_", "ROSTER_", "ANALYTICS_", "OPTISYNC_")


def provenance() -> dict[str, Any]:
    """The commit measured (marked when the tree had other changes) and the service settings
    overridden through the environment: what a result needs to be compared or reproduced."""
    repo = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = [
        line for line in git("status", "--porcelain").splitlines() if "bench/results/" not in line
    ]
    return {
        "code": commit + (" with uncommitted changes" if changed else ""),
        "settings": {
            k: v for k, v in sorted(os.environ.items()) if k.startswith(SETTINGS_PREFIXES)
        },
    }


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) a process used so far: per event, a figure other load on a
    shared machine does not move the way it moves latency."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wipe_data(cfg: infra.InfraConfig) -> None:
    """Stop the profile's servers and delete their data, so a run starts as on a fresh machine
    (earlier runs' topics and documents would otherwise grow every restore and every scan)."""
    infra.down(cfg)
    for proc in infra.managed(cfg):
        shutil.rmtree(proc.home / "data", ignore_errors=True)
