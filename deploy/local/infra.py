"""The one launcher for the real local infrastructure, used by `make up` and the test fixtures.

Starts, as plain processes with pid files under `.run/<profile>/`:

* Apache Kafka 3.9.2 in KRaft combined mode (broker + controller), run with `java` from jars that
  Maven resolves from Maven Central into a cache outside the clone;
* Redis from Debian's `redis-server` (apt-installed when missing and we are root);
* FerretDB v1 with the SQLite backend, through our own Go launcher in `deploy/local/ferretdb`.

`KAFKA_BOOTSTRAP`, `REDIS_URL` and `MONGO_URL` switch each one to an existing server instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from deploy.local.procs import ManagedProcess, wait_until

if TYPE_CHECKING:
    from optisync_common.settings import ServiceSettings

S = TypeVar("S", bound="ServiceSettings")

REPO = Path(__file__).resolve().parents[2]
KAFKA_VERSION = "3.9.2"


def _progress(msg: str) -> None:
    print(f"[infra] {msg}", flush=True)


@dataclass(frozen=True)
class InfraConfig:
    """Where things live and which ports they use. `profile` separates `make up` from tests."""

    profile: str = "dev"
    kafka_port: int = 9092
    controller_port: int = 9093
    redis_port: int = 6379
    mongo_port: int = 27017
    run_root: Path = REPO / ".run"
    cache_dir: Path = field(
        default_factory=lambda: Path(
            os.environ.get("OPTISYNC_CACHE", Path.home() / ".cache" / "optisync")
        )
    )

    @classmethod
    def from_env(cls, profile: str = "dev", port_offset: int = 0) -> InfraConfig:
        def port(name: str, default: int) -> int:
            return int(os.environ.get(f"OPTISYNC_{name}_PORT", default + port_offset))

        return cls(
            profile=profile,
            kafka_port=port("KAFKA", 9092),
            controller_port=port("KAFKA_CONTROLLER", 9093),
            redis_port=port("REDIS", 6379),
            mongo_port=port("MONGO", 27017),
        )

    @property
    def run_dir(self) -> Path:
        return self.run_root / self.profile


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap: str
    redis_url: str
    mongo_url: str

    def as_env(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "REDIS_URL": self.redis_url,
            "MONGO_URL": self.mongo_url,
        }

    def settings(self, cls: type[S], **overrides: Any) -> S:
        """Any service's settings pointed at these servers."""
        return cls(
            kafka_bootstrap=self.kafka_bootstrap,
            redis_url=self.redis_url,
            mongo_url=self.mongo_url,
            **overrides,
        )


# --------------------------------------------------------------------------- health checks


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def kafka_healthy(bootstrap: str) -> bool:
    """A metadata round trip with a controller elected, not just an open port."""
    import logging

    from aiokafka.admin import AIOKafkaAdminClient

    # Connection-refused noise while the broker boots is expected; the caller reports failures.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    async def probe() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await asyncio.wait_for(admin.start(), 5)
            await asyncio.wait_for(admin.list_topics(), 5)
            return True
        finally:
            await admin.close()

    try:
        return asyncio.run(probe())
    except Exception:
        return False


def redis_healthy(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def mongo_healthy(url: str) -> bool:
    from pymongo import MongoClient

    try:
        client: MongoClient[dict[str, object]] = MongoClient(
            url, serverSelectionTimeoutMS=1500, connectTimeoutMS=1500
        )
        try:
            client.admin.command("ping")
            return True
        finally:
            client.close()
    except Exception:
        return False


# --------------------------------------------------------------------------- installers


def ensure_kafka_jars(cfg: InfraConfig) -> Path:
    libs = cfg.cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"
    if (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
        return libs
    if shutil.which("mvn") is None:
        raise RuntimeError("Maven (mvn) is needed to fetch the Kafka jars: apt-get install maven")
    _progress(f"resolving Apache Kafka {KAFKA_VERSION} jars from Maven Central into {libs}")
    tmp = libs.with_name("libs.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(
        [
            "mvn", "-B", "--no-transfer-progress", "-f", str(REPO / "deploy/local/kafka/pom.xml"),
            "dependency:copy-dependencies", f"-DoutputDirectory={tmp}", "-DincludeScope=runtime",
        ],
        check=True,
    )  # fmt: skip
    tmp.rename(libs)
    return libs


def ensure_redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError("redis-server is missing: sudo apt-get install -y redis-server")
    _progress("installing Debian's redis-server with apt")
    _apt_install("redis-server")
    # The package may start a system instance on 6379; ours is separate, so stop that one.
    subprocess.run(["service", "redis-server", "stop"], check=False, capture_output=True)
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("apt installed redis-server but it is not on PATH")
    return found


def _apt_install(*packages: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        check=True,
        env=env,
    )


def ensure_chromium() -> str:
    """Debian's chromium, which the browser tests drive through Playwright (no browser
    download: Playwright is pointed at this binary)."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError("chromium is missing: sudo apt-get install -y chromium")
    _progress("installing Debian's chromium with apt (browser tests)")
    _apt_install("chromium", "fonts-noto-cjk")
    found = shutil.which("chromium")
    if not found:
        raise RuntimeError("apt installed chromium but it is not on PATH")
    return found


def ensure_ferretdb_binary(cfg: InfraConfig) -> Path:
    binary = cfg.cache_dir / "bin" / "ferretdb-launcher-v1.24.2"
    if binary.exists():
        return binary
    if shutil.which("go") is None:
        raise RuntimeError("Go is needed to build FerretDB: install golang (1.24+)")
    _progress("building FerretDB v1.24.2 (SQLite) from the Go module proxy (first time: ~2 min)")
    binary.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["go", "build", "-v", "-o", str(binary), "."],
        cwd=REPO / "deploy/local/ferretdb",
        check=True,
        env={**os.environ, "GOFLAGS": "-mod=mod"},
    )
    return binary


# --------------------------------------------------------------------------- servers


def _kafka_properties(cfg: InfraConfig, data: Path) -> str:
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{cfg.controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{cfg.kafka_port},"
            f"CONTROLLER://127.0.0.1:{cfg.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{cfg.kafka_port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={data}",
            "num.partitions=6",
            # Topics come from schemas/topics.yaml (`make topics`); a typo must not create one.
            "auto.create.topics.enable=false",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=12",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "log.segment.bytes=67108864",
            "log.retention.check.interval.ms=60000",
            # KIP-890's check (a round trip to the transaction coordinator before a
            # transaction's first write to each partition) guards against a produce request
            # delayed in flight past its transaction's end, between brokers. Here there is
            # one broker on loopback, and the check cost a third of Kafka's CPU per booking
            # at 100/s (4.3 -> 2.9 ms; p99 at 500/s 188 -> 146 ms, `python -m bench.run
            # --steps bookings`). Multi-broker clusters should keep the default (true).
            "transaction.partition.verification.enable=false",
            # One network thread and two request handlers instead of 3 and 8: on two cores
            # the extra threads only add wake-ups. Same-window A/B at 500 bookings/s, two
            # rounds: Kafka CPU 0.77-0.79 vs 0.84-0.88 ms per booking, p99 94-112 vs 107-122 ms.
            "num.network.threads=1",
            "num.io.threads=2",
            "",
        ]
    )


def _java_command(libs: Path, log4j: Path, heap: str, main: str, *args: str) -> list[str]:
    return [
        shutil.which("java") or "java",
        f"-Xms{heap}", f"-Xmx{heap}",
        # Parallel young collections: G1's pauses (10-50 ms every few seconds under load)
        # landed in the bookings' p99; p99 at 500/s went 146 -> 104 ms with this.
        "-XX:+UseParallelGC",
        "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{log4j}",
        "-cp", f"{libs}/*",
        main, *args,
    ]  # fmt: skip


def start_kafka(cfg: InfraConfig) -> str:
    bootstrap = f"127.0.0.1:{cfg.kafka_port}"
    proc = ManagedProcess("kafka", cfg.run_dir / "kafka")
    if proc.is_running() and kafka_healthy(bootstrap):
        _progress(f"kafka already running at {bootstrap} (pid {proc.pid()})")
        return bootstrap
    if port_open("127.0.0.1", cfg.kafka_port):
        raise RuntimeError(
            f"port {cfg.kafka_port} is taken by a process we did not start; "
            "set KAFKA_BOOTSTRAP to use it or OPTISYNC_KAFKA_PORT to pick another port"
        )
    if shutil.which("java") is None:
        raise RuntimeError("java is needed for Kafka: apt-get install -y openjdk-17-jre-headless")
    libs = ensure_kafka_jars(cfg)
    home = proc.home
    home.mkdir(parents=True, exist_ok=True)
    data = home / "data"
    props = home / "server.properties"
    props.write_text(_kafka_properties(cfg, data))
    log4j = home / "log4j.properties"
    log4j.write_text(
        "log4j.rootLogger=WARN, stdout\n"
        "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
        "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
        "log4j.logger.kafka.server.KafkaServer=INFO\n"
        "log4j.logger.kafka.server.KafkaRaftServer=INFO\n"
    )
    if not (data / "meta.properties").exists():
        _progress("formatting Kafka KRaft storage")
        cluster_id = subprocess.run(
            _java_command(libs, log4j, "128m", "kafka.tools.StorageTool", "random-uuid"),
            check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        subprocess.run(
            _java_command(
                libs, log4j, "128m", "kafka.tools.StorageTool",
                "format", "-t", cluster_id, "-c", str(props), "--ignore-formatted",
            ),
            check=True, capture_output=True, text=True,
        )  # fmt: skip
    _progress(f"starting kafka {KAFKA_VERSION} (KRaft) at {bootstrap}")
    proc.start(_java_command(libs, log4j, "768m", "kafka.Kafka", str(props)))
    wait_until(lambda: kafka_healthy(bootstrap), timeout=90, what="kafka", proc=proc, interval=0.5)
    return bootstrap


def start_redis(cfg: InfraConfig) -> str:
    url = f"redis://127.0.0.1:{cfg.redis_port}/0"
    proc = ManagedProcess("redis", cfg.run_dir / "redis")
    if proc.is_running() and redis_healthy(url):
        _progress(f"redis already running at {url} (pid {proc.pid()})")
        return url
    if port_open("127.0.0.1", cfg.redis_port):
        raise RuntimeError(
            f"port {cfg.redis_port} is taken by a process we did not start; "
            "set REDIS_URL to use it or OPTISYNC_REDIS_PORT to pick another port"
        )
    binary = ensure_redis_server()
    proc.home.mkdir(parents=True, exist_ok=True)
    _progress(f"starting redis at {url}")
    # No persistence: the Redis views are projections rebuilt from Kafka topics.
    proc.start(
        [
            binary, "--port", str(cfg.redis_port), "--bind", "127.0.0.1",
            "--dir", str(proc.home), "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--protected-mode", "yes",
        ]
    )  # fmt: skip
    wait_until(lambda: redis_healthy(url), timeout=20, what="redis", proc=proc)
    return url


def start_ferretdb(cfg: InfraConfig) -> str:
    url = f"mongodb://127.0.0.1:{cfg.mongo_port}/"
    proc = ManagedProcess("ferretdb", cfg.run_dir / "ferretdb")
    if proc.is_running() and mongo_healthy(url):
        _progress(f"ferretdb already running at {url} (pid {proc.pid()})")
        return url
    if port_open("127.0.0.1", cfg.mongo_port):
        raise RuntimeError(
            f"port {cfg.mongo_port} is taken by a process we did not start; "
            "set MONGO_URL to use it or OPTISYNC_MONGO_PORT to pick another port"
        )
    binary = ensure_ferretdb_binary(cfg)
    _progress(f"starting ferretdb (sqlite) at {url}")
    proc.start(
        [
            str(binary),
            f"--listen-addr=127.0.0.1:{cfg.mongo_port}",
            f"--data-dir={proc.home / 'data'}",
        ]
    )
    wait_until(lambda: mongo_healthy(url), timeout=30, what="ferretdb", proc=proc)
    return url


# --------------------------------------------------------------------------- entry points


def up(cfg: InfraConfig) -> Endpoints:
    """Start (or reuse) every server; honour KAFKA_BOOTSTRAP / REDIS_URL / MONGO_URL."""
    kafka = os.environ.get("KAFKA_BOOTSTRAP") or start_kafka(cfg)
    redis_url = os.environ.get("REDIS_URL") or start_redis(cfg)
    mongo = os.environ.get("MONGO_URL") or start_ferretdb(cfg)
    endpoints = Endpoints(kafka, redis_url, mongo)
    _check_external(endpoints)
    return endpoints


def _check_external(ep: Endpoints) -> None:
    checks = [
        ("Kafka", ep.kafka_bootstrap, kafka_healthy),
        ("Redis", ep.redis_url, redis_healthy),
        ("MongoDB", ep.mongo_url, mongo_healthy),
    ]
    for name, target, healthy in checks:
        if not healthy(target):
            raise RuntimeError(f"{name} at {target} is not reachable")


def managed(cfg: InfraConfig) -> Iterator[ManagedProcess]:
    for name in ("ferretdb", "redis", "kafka"):
        yield ManagedProcess(name, cfg.run_dir / name)


def down(cfg: InfraConfig) -> None:
    for proc in managed(cfg):
        if proc.stop():
            _progress(f"stopped {proc.name}")


def status(cfg: InfraConfig) -> dict[str, int | None]:
    return {proc.name: proc.pid() for proc in managed(cfg)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("command", choices=["up", "down", "status", "install"])
    parser.add_argument("--profile", default="dev")
    args = parser.parse_args(argv)
    cfg = InfraConfig.from_env(args.profile)
    if args.command == "up":
        ep = up(cfg)
        for key, value in ep.as_env().items():
            print(f"{key}={value}")
    elif args.command == "down":
        down(cfg)
    elif args.command == "install":
        ensure_kafka_jars(cfg)
        ensure_redis_server()
        ensure_ferretdb_binary(cfg)
        ensure_chromium()
    else:
        for name, pid in status(cfg).items():
            print(f"{name}: {'running pid ' + str(pid) if pid else 'stopped'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
