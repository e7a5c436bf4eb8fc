"""`make up` / `make down`: the real infrastructure, the topics, every service and a demo chain.

Services run as processes with pid files next to the infrastructure's under `.run/<profile>/`,
so `down` stops exactly what `up` started, and a second `up` reuses what is already healthy.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from deploy.local import infra
from deploy.local.procs import ManagedProcess, wait_until

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ServiceProcess:
    name: str
    module: str
    env_prefix: str
    port: int
    args: tuple[str, ...] = ()
    has_docs: bool = True

    @property
    def port_env(self) -> str:
        """HTTP services read `<PREFIX>HTTP_PORT`; stream workers `<SERVICE>_WORKER_PORT`."""
        return f"{self.env_prefix}HTTP_PORT" if self.has_docs else f"{self.env_prefix}PORT"

    def url(self, offset: int = 0) -> str:
        return f"http://127.0.0.1:{self.port + offset}"


SERVICES: tuple[ServiceProcess, ...] = (
    ServiceProcess("roster-api", "services.roster.entrypoints.http", "ROSTER_", 8001),
    ServiceProcess("booking-api", "services.booking.entrypoints.http", "BOOKING_", 8002),
    ServiceProcess(
        "booking-processor", "services.booking.entrypoints.processor", "BOOKING_WORKER_",
        8102, has_docs=False,
    ),
    ServiceProcess(
        "booking-projector", "services.booking.entrypoints.projector", "BOOKING_PROJECTOR_",
        8202, has_docs=False,
    ),
    ServiceProcess("notify-api", "services.notify.entrypoints.http", "NOTIFY_", 8003),
    ServiceProcess(
        "notify-worker", "services.notify.entrypoints.worker", "NOTIFY_WORKER_",
        8103, has_docs=False,
    ),
    ServiceProcess("analytics-api", "services.analytics.entrypoints.http", "ANALYTICS_", 8004),
    ServiceProcess(
        "analytics-worker", "services.analytics.entrypoints.worker", "ANALYTICS_WORKER_",
        8104, has_docs=False,
    ),
)  # fmt: skip


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
            return bool(resp.status == 200)
    except Exception:
        return False


def start_services(
    cfg: infra.InfraConfig,
    endpoints: infra.Endpoints,
    port_offset: int = 0,
    only: Sequence[str] | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Start every service (or those named in `only`) that is not already running and ready;
    `extra_env` adds settings (e.g. the tests' short waitlist hold)."""
    base_env = {
        **os.environ,
        **(extra_env or {}),
        **endpoints.as_env(),
        "PYTHONUNBUFFERED": "1",
        "OPTISYNC_STATE_DIR": str(cfg.run_dir / "state"),
    }
    base_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), base_env.get("PYTHONPATH")]))
    # Links customers get (offer accept pages, manage links) point at this stack's booking API.
    booking_url = next(svc.url(port_offset) for svc in SERVICES if svc.name == "booking-api")
    base_env.setdefault("NOTIFY_PUBLIC_BOOKING_URL", booking_url)
    started: list[tuple[ServiceProcess, ManagedProcess]] = []
    chosen = [svc for svc in SERVICES if only is None or svc.name in only]
    for svc in chosen:
        proc = ManagedProcess(svc.name, cfg.run_dir / "services" / svc.name)
        url = svc.url(port_offset)
        if proc.is_running() and _ready(url):
            print(f"[stack] {svc.name} already running (pid {proc.pid()})", flush=True)
            continue
        proc.stop()
        env = {
            **base_env,
            svc.port_env: str(svc.port + port_offset),
        }
        print(f"[stack] starting {svc.name} on {url}", flush=True)
        proc.start([sys.executable, "-m", svc.module, *svc.args], env=env, cwd=REPO)
        started.append((svc, proc))
    for svc, proc in started:
        url = svc.url(port_offset)
        wait_until(functools.partial(_ready, url), timeout=120, what=svc.name, proc=proc)
        print(f"[stack] {svc.name} ready", flush=True)
    return {svc.name: svc.url(port_offset) for svc in chosen}


def stop_services(cfg: infra.InfraConfig) -> None:
    for svc in reversed(SERVICES):
        proc = ManagedProcess(svc.name, cfg.run_dir / "services" / svc.name)
        if proc.stop():
            print(f"[stack] stopped {svc.name}", flush=True)


def up(cfg: infra.InfraConfig) -> None:
    from optisync_common.topics import apply_registry
    from services.roster.entrypoints.seed_demo import seed_demo_chain
    from services.roster.settings import RosterSettings

    endpoints = infra.up(cfg)
    print("[stack] creating/updating topics from schemas/topics.yaml", flush=True)
    asyncio.run(apply_registry(endpoints.kafka_bootstrap, log=print))
    urls = start_services(cfg, endpoints)
    print("[stack] loading the demo chain (3 stores, 6 optometrists, a week of shifts)", flush=True)
    summary = asyncio.run(seed_demo_chain(endpoints.settings(RosterSettings)))
    print(f"[stack] {summary}", flush=True)
    print("\nOptiSync is up:")
    for svc in SERVICES:
        print(f"  {svc.name:<18} {urls[svc.name]}/docs")
    print(f"  {'kafka':<18} {endpoints.kafka_bootstrap}")
    print(f"  {'redis':<18} {endpoints.redis_url}")
    print(f"  {'mongodb':<18} {endpoints.mongo_url}")
    print("Stop everything with: make down")


def rebuild_projections(cfg: infra.InfraConfig, store_id: str | None) -> None:
    """`make rebuild-projections`: the booking projector stops for the replay (the rebuild
    refuses to run beside it) and starts again after it, if it was running."""
    from optisync_common.kafka import active_groups
    from services.booking.adapters.projections import GROUP_ID, VIEWS_GROUP_ID, rebuild
    from services.booking.settings import BookingSettings

    endpoints = infra.up(cfg)
    settings = endpoints.settings(BookingSettings)
    projector = ManagedProcess("booking-projector", cfg.run_dir / "services" / "booking-projector")
    was_running = projector.stop()
    if was_running:
        print("[stack] stopped booking-projector for the rebuild", flush=True)

    def groups_left() -> bool:  # a stop leaves the groups at once; a crash, after a timeout
        return not asyncio.run(active_groups(settings, [GROUP_ID, VIEWS_GROUP_ID]))

    try:
        wait_until(
            groups_left, timeout=60, interval=1.0, what="the projector's consumer groups to empty"
        )
        asyncio.run(rebuild(settings, store_id=store_id))
    finally:
        if was_running:
            start_services(cfg, endpoints, only=["booking-projector"])


def down(cfg: infra.InfraConfig) -> None:
    stop_services(cfg)
    infra.down(cfg)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the OptiSync platform locally")
    parser.add_argument("command", choices=["up", "down", "status", "rebuild-projections"])
    parser.add_argument("--profile", default="dev")
    parser.add_argument("--store", help="rebuild-projections: only this store's")
    args = parser.parse_args(argv)
    cfg = infra.InfraConfig.from_env(args.profile)
    try:
        if args.command == "up":
            up(cfg)
        elif args.command == "down":
            down(cfg)
        elif args.command == "rebuild-projections":
            rebuild_projections(cfg, args.store)
        else:
            for name, pid in infra.status(cfg).items():
                print(f"{name:<18} {'pid ' + str(pid) if pid else 'stopped'}")
            for svc in SERVICES:
                pid = ManagedProcess(svc.name, cfg.run_dir / "services" / svc.name).pid()
                print(f"{svc.name:<18} {'pid ' + str(pid) if pid else 'stopped'}")
    except (RuntimeError, TimeoutError) as exc:
        print(f"[stack] error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
