"""What a C Kafka client would save: aiokafka against confluent-kafka (librdkafka), alternated.

Not part of `make bench`: it answers one question, whether moving the booking path to
confluent-kafka would cut the CPU per booking enough for the 500/s p99 (the two cores are about
80% busy there and the tail is queueing for them). confluent-kafka is not a dependency of the
services; install it in the venv first (`.venv/bin/pip install confluent-kafka`).

Each client runs in a process of its own (its CPU is read from inside, every thread counted), in
the booking path's two patterns, at a fixed open-loop rate:

- `api`: as the booking API does with a command and its decision: every record produced on its
  own (idempotent, acks=all, no linger) and awaited, and every record read back by a
  read-committed consumer of all partitions, matched by key;
- `processor`: as the availability processor does: records consumed in batches, three records
  out per record in (keyed), the input positions committed in the same transaction, one
  transaction at a time. Records are fed and their outputs read back by this process, with
  aiokafka for both clients (not counted).

Latency is from a record's scheduled time to its record (api) or its outputs (processor) read
back committed. The broker's CPU over the same window is counted per record too: a client that
sends more requests costs the broker more.

    python -m bench.kafka_clients --rate 500 --seconds 20 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic

from bench.hostspeed import HostSpeedProbe, fast_phase_us, slow_share
from bench.platform import bench_infra, cpu_seconds, save_results
from bench.stats import markdown_table, percentiles
from deploy.local import infra

CLIENTS = ("aiokafka", "confluent")
PATTERNS = ("api", "processor")
PARTITIONS = 12
KEYS = 40  # stores, as in the booking benchmark
RECORD = b"x" * 600  # about a booking command's size
OUTPUTS = 3  # records a decision writes (event, fact, view)
WARM_UP_S = 5.0
MAX_BATCH = 500


def _topics(pattern: str, run_id: str) -> tuple[str, str]:
    return f"kc.{run_id}.{pattern}.in", f"kc.{run_id}.{pattern}.out"


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the process
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------- the worker: one client


class Window:
    """The measured window: the worker's CPU over it, and lines that tell the parent (which
    reads the broker's CPU) when it opens and closes."""

    def __init__(self) -> None:
        self.cpu_start = 0.0
        self.cpu_s = 0.0
        self.start = float("inf")  # records scheduled before it opens are not counted

    def open(self) -> None:
        self.cpu_start, self.start = _cpu_s(), time.perf_counter()
        print("window-open", flush=True)

    def close(self) -> None:
        self.cpu_s = _cpu_s() - self.cpu_start
        print("window-closed", flush=True)


async def _paced(rate: int, seconds: float, send: Callable[[int, float], None]) -> None:
    """Call `send(i, scheduled_at)` at `rate` per second for `seconds`, catching up when late."""
    start, total = time.perf_counter(), int(rate * seconds)
    for i in range(total):
        at = start + i / rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        send(i, at)


async def _api_aiokafka(bootstrap: str, topic: str, rate: int, seconds: float) -> dict[str, Any]:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0
    )
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    await producer.start()
    await consumer.start()
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    scheduled: dict[bytes, float] = {}
    latencies: list[float] = []
    window = Window()

    async def read_back() -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=500, max_records=MAX_BATCH)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    at = scheduled.pop(record.key or b"", None)
                    if at is not None and at >= window.start:
                        latencies.append((now - at) * 1000)

    async def request(i: int) -> None:
        await producer.send_and_wait(topic, RECORD, key=_key(i))

    reader = asyncio.create_task(read_back())
    await _run_requests(window, rate, seconds, scheduled, request)
    reader.cancel()
    await producer.stop()
    await consumer.stop()
    return {"cpu_s": window.cpu_s, "latencies": latencies}


def _key(i: int) -> bytes:
    return f"{i % KEYS}/{i}".encode()


async def _run_requests(
    window: Window,
    rate: int,
    seconds: float,
    scheduled: dict[bytes, float],
    request: Callable[[int], Coroutine[Any, Any, None]],
) -> None:
    """The api pattern: each record sent by a task of its own, as a request's command is; the
    window closes once every record was read back (`scheduled` emptied by the reader)."""
    tasks: set[asyncio.Task[None]] = set()

    def send(i: int, at: float) -> None:
        scheduled[_key(i)] = at
        task = asyncio.create_task(request(i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    await _run_windowed(window, rate, seconds, send, lambda: not scheduled)


async def _until(done: Callable[[], bool], seconds: float = 30) -> None:
    """Wait for the last records (every record's answer), at most `seconds`."""
    for _ in range(int(seconds / 0.01)):
        if done():
            return
        await asyncio.sleep(0.01)


async def _run_windowed(
    window: Window,
    rate: int,
    seconds: float,
    send: Callable[[int, float], None],
    drained: Callable[[], bool],
) -> None:
    """Warm up unmeasured, then measure `seconds` plus the time the last records take."""
    await _paced(rate, WARM_UP_S, send)
    window.open()
    offset = int(rate * WARM_UP_S)
    await _paced(rate, seconds, lambda i, at: send(offset + i, at))
    await _until(drained)
    window.close()


def _confluent() -> Any:
    try:
        return importlib.import_module("confluent_kafka")
    except ImportError:
        sys.exit("needs confluent-kafka: .venv/bin/pip install confluent-kafka")


def _take(consumer: Any) -> list[Any]:
    """What has arrived, as soon as anything has: `consume(n, timeout)` alone would wait for n
    records or the whole timeout."""
    first = consumer.poll(0.1)
    return [] if first is None else [first, *consumer.consume(MAX_BATCH - 1, 0)]


class _Polling:
    """librdkafka answers on its own threads; a thread of ours polls it and hands what comes to
    the event loop (the way an asyncio service would have to use it)."""

    def __init__(self, poll: Callable[[], None]) -> None:
        self._poll = poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poll()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


async def _api_confluent(bootstrap: str, topic: str, rate: int, seconds: float) -> dict[str, Any]:
    ck = _confluent()
    loop = asyncio.get_running_loop()
    producer = ck.Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
         "linger.ms": 0}
    )  # fmt: skip
    consumer = ck.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"kc-{os.getpid()}",
         "isolation.level": "read_committed", "enable.auto.commit": False,
         "auto.offset.reset": "latest"}
    )  # fmt: skip
    consumer.assign([ck.TopicPartition(topic, p, ck.OFFSET_END) for p in range(PARTITIONS)])
    scheduled: dict[bytes, float] = {}
    latencies: list[float] = []
    window = Window()

    def arrived(messages: list[Any]) -> None:
        now = time.perf_counter()
        for message in messages:
            at = scheduled.pop(message.key() or b"", None)
            if at is not None and at >= window.start:
                latencies.append((now - at) * 1000)

    def consume() -> None:
        messages = _take(consumer)
        if messages:
            loop.call_soon_threadsafe(arrived, [m for m in messages if m.error() is None])

    def settle(future: asyncio.Future[None], error: Any) -> None:
        if not future.done():
            future.set_exception(RuntimeError(str(error))) if error else future.set_result(None)

    async def request(i: int) -> None:
        future: asyncio.Future[None] = loop.create_future()
        producer.produce(
            topic, RECORD, key=_key(i),
            on_delivery=lambda err, _msg: loop.call_soon_threadsafe(settle, future, err),
        )  # fmt: skip
        await future

    pollers = [_Polling(lambda: producer.poll(0.1)), _Polling(consume)]
    await _run_requests(window, rate, seconds, scheduled, request)
    for poller in pollers:
        poller.stop()
    producer.flush(5)
    consumer.close()
    return {"cpu_s": window.cpu_s, "latencies": latencies}


class Control:
    """The parent opens and closes a processor worker's window through its stdin (it knows when
    the records it feeds start and end); read on a thread, checked between batches."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in sys.stdin:
            self.asked.append(line.strip())

    def follow(self, window: Window) -> bool:
        """Act on what was asked; False once asked to stop."""
        while self.asked:
            asked = self.asked.pop(0)
            if asked == "open":
                window.open()
            elif asked == "close":
                window.close()
            elif asked == "stop":
                return False
        return True


async def _processor_aiokafka(bootstrap: str, source: str, sink: str) -> float:
    group = f"kc-aiokafka-{os.getpid()}"
    consumer = AIOKafkaConsumer(
        source, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
        isolation_level="read_committed", auto_offset_reset="latest",
    )  # fmt: skip
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=group, enable_idempotence=True,
        acks="all", linger_ms=0,
    )  # fmt: skip
    await consumer.start()
    await producer.start()
    window, control = Window(), Control()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=100)
    print("ready", flush=True)
    while control.follow(window):
        batch = await consumer.getmany(timeout_ms=100, max_records=MAX_BATCH)
        if not batch:
            continue
        async with producer.transaction():
            for records in batch.values():
                for record in records:
                    for n in range(OUTPUTS):
                        await producer.send(
                            sink, record.value, key=(record.key or b"") + b"/%d" % n
                        )
            offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
            await producer.send_offsets_to_transaction(offsets, group)
    await producer.stop()
    await consumer.stop()
    return window.cpu_s


def _processor_confluent(bootstrap: str, source: str, sink: str) -> float:
    ck = _confluent()
    group = f"kc-confluent-{os.getpid()}"
    consumer = ck.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
         "isolation.level": "read_committed", "auto.offset.reset": "latest"}
    )  # fmt: skip
    producer = ck.Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": group, "acks": "all",
         "enable.idempotence": True, "linger.ms": 0}
    )  # fmt: skip
    consumer.subscribe([source])
    producer.init_transactions()
    window, control = Window(), Control()
    while not consumer.assignment():
        consumer.consume(1, 0.1)
    print("ready", flush=True)
    while control.follow(window):
        messages = [m for m in _take(consumer) if m.error() is None]
        if not messages:
            continue
        producer.begin_transaction()
        for message in messages:
            for n in range(OUTPUTS):
                producer.produce(sink, message.value(), key=message.key() + b"/%d" % n)
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata()
        )
        producer.commit_transaction()
    consumer.close()
    return float(window.cpu_s)


def worker(args: argparse.Namespace) -> None:
    """One client in one pattern; prints its result as the last line (JSON)."""
    source, sink = _topics(args.pattern, args.run_id)
    if args.pattern == "api":
        run = _api_aiokafka if args.client == "aiokafka" else _api_confluent
        result = asyncio.run(run(args.bootstrap, source, args.rate, args.seconds))
    elif args.client == "aiokafka":
        result = {"cpu_s": asyncio.run(_processor_aiokafka(args.bootstrap, source, sink))}
    else:
        result = {"cpu_s": _processor_confluent(args.bootstrap, source, sink)}
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------- the parent: alternated runs


async def _create_topics(bootstrap: str, run_id: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [name for pattern in PATTERNS for name in _topics(pattern, run_id)]
        await admin.create_topics(
            [NewTopic(name, num_partitions=PARTITIONS, replication_factor=1) for name in names]
        )
    finally:
        await admin.close()


class Feeder:
    """For the processor pattern: records in at the rate, their outputs read back committed."""

    def __init__(self, bootstrap: str, source: str, sink: str) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, isolation_level="read_committed"
        )
        self.source, self.sink = source, sink
        self.scheduled: dict[bytes, float] = {}
        self.outputs: dict[bytes, int] = {}
        self.latencies: list[float] = []
        self.measure_from = float("inf")
        self.sending: set[asyncio.Future[Any]] = set()

    async def start(self) -> None:
        await self.producer.start()
        await self.consumer.start()
        partitions = [TopicPartition(self.sink, p) for p in range(PARTITIONS)]
        self.consumer.assign(partitions)
        await self.consumer.seek_to_end(*partitions)
        self._reader = asyncio.create_task(self._read_back())

    async def _read_back(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=500, max_records=MAX_BATCH)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    key = (record.key or b"").rsplit(b"/", 1)[0]
                    seen = self.outputs.get(key, 0) + 1
                    self.outputs[key] = seen
                    at = self.scheduled.get(key)
                    if seen == OUTPUTS and at is not None:
                        del self.scheduled[key]
                        if at >= self.measure_from:
                            self.latencies.append((now - at) * 1000)

    async def feed(self, rate: int, seconds: float, tag: str) -> None:
        def send(i: int, at: float) -> None:
            key = f"{i % KEYS}/{tag}-{i}".encode()
            self.scheduled[key] = at
            task = asyncio.ensure_future(self.producer.send(self.source, RECORD, key=key))
            self.sending.add(task)
            task.add_done_callback(self.sending.discard)

        await _paced(rate, seconds, send)

    async def stop(self) -> None:
        self._reader.cancel()
        await self.producer.stop()
        await self.consumer.stop()


class WorkerProcess:
    """A worker's process: its output lines read as they come, the broker's CPU read when it
    opens and closes its window."""

    def __init__(self, proc: asyncio.subprocess.Process, kafka_pid: int) -> None:
        self.proc, self.kafka_pid = proc, kafka_pid
        self.kafka_cpu: dict[str, float | None] = {}
        self.lines: list[str] = []
        self.ready = asyncio.Event()
        self.window_opened = asyncio.Event()
        self.reading = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode().strip()
            if line in ("window-open", "window-closed"):
                self.kafka_cpu[line] = cpu_seconds(self.kafka_pid)
                if line == "window-open":
                    self.window_opened.set()
            elif line == "ready":
                self.ready.set()
            else:
                self.lines.append(line)

    def ask(self, what: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{what}\n".encode())

    async def result(self) -> dict[str, Any]:
        await self.reading
        await self.proc.wait()
        if self.proc.returncode != 0 or not self.lines:
            raise RuntimeError(f"worker failed ({self.proc.returncode})")
        result: dict[str, Any] = json.loads(self.lines[-1])
        opened = self.kafka_cpu.get("window-open")
        closed = self.kafka_cpu.get("window-closed")
        result["kafka_cpu_s"] = None if opened is None or closed is None else closed - opened
        return result


async def _drive_processor(worker: WorkerProcess, feeder: Feeder, rate: int, seconds: float,
                           tag: str) -> None:  # fmt: skip
    await feeder.start()
    await asyncio.wait_for(worker.ready.wait(), 60)
    await feeder.feed(rate, WARM_UP_S, f"{tag}-warm")
    worker.ask("open")
    await worker.window_opened.wait()
    feeder.measure_from = time.perf_counter()
    await feeder.feed(rate, seconds, tag)
    await _until(lambda: not feeder.scheduled)
    worker.ask("close")
    worker.ask("stop")
    await feeder.stop()


async def _step(
    args: argparse.Namespace, bootstrap: str, kafka_pid: int, client: str, pattern: str,
    run_id: str, tag: str,
) -> dict[str, Any]:  # fmt: skip
    command = [
        sys.executable, "-m", "bench.kafka_clients", "--worker", "--client", client,
        "--pattern", pattern, "--rate", str(args.rate), "--seconds", str(args.seconds),
        "--bootstrap", bootstrap, "--run-id", run_id,
    ]  # fmt: skip
    pipe = asyncio.subprocess.PIPE
    with HostSpeedProbe() as probe:
        proc = await asyncio.create_subprocess_exec(
            *command, stdin=pipe, stdout=pipe, limit=1 << 26
        )  # the result line holds every latency
        worker = WorkerProcess(proc, kafka_pid)
        feeder = None
        if pattern == "processor":
            feeder = Feeder(bootstrap, *_topics(pattern, run_id))
            await _drive_processor(worker, feeder, args.rate, args.seconds, tag)
        result = await worker.result()
    latencies = feeder.latencies if feeder is not None else result["latencies"]
    records = max(len(latencies), 1)
    p50, p99 = percentiles(latencies, 0.5, 0.99)
    kafka_cpu = result["kafka_cpu_s"]
    return {
        "client": client, "pattern": pattern, "records": len(latencies), "p50_ms": p50,
        "p99_ms": p99, "client_cpu_ms": round(1000 * result["cpu_s"] / records, 3),
        "kafka_cpu_ms": None if kafka_cpu is None else round(1000 * kafka_cpu / records, 3),
        "host_speed_samples": probe.samples,
    }  # fmt: skip


async def _run(args: argparse.Namespace, bootstrap: str, kafka_pid: int, run_id: str) -> list[Any]:
    await _create_topics(bootstrap, run_id)
    rows = []
    for round_ in range(args.rounds):
        for pattern in args.patterns:
            order = CLIENTS if round_ % 2 == 0 else CLIENTS[::-1]
            for client in order:
                print(f"[kafka-clients] round {round_ + 1}: {pattern} on {client}", flush=True)
                tag = f"{round_}-{client}"
                rows.append(await _step(args, bootstrap, kafka_pid, client, pattern, run_id, tag))
    # A slow phase is judged against the run's fastest samples, as in `bench.run`.
    fast_us = fast_phase_us([s for row in rows for s in row["host_speed_samples"]])
    for row in rows:
        samples = row.pop("host_speed_samples")
        row["host_slow_pct"] = round(100 * slow_share(samples, fast_us))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="aiokafka against confluent-kafka")
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--patterns", type=lambda s: s.split(","), default=list(PATTERNS))
    parser.add_argument("--profile", default="bench")
    parser.add_argument("--port-offset", type=int, default=2000)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--pattern", choices=PATTERNS, help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--run-id", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    _confluent()  # fail before starting anything
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    with bench_infra(args.profile, args.port_offset) as (cfg, endpoints):
        kafka_pid = infra.status(cfg)["kafka"]
        assert kafka_pid is not None
        rows = asyncio.run(_run(args, endpoints.kafka_bootstrap, kafka_pid, run_id))
    headers = ["pattern", "client", "records", "p50 ms", "p99 ms", "client CPU ms / record",
               "Kafka CPU ms / record", "host slow %"]  # fmt: skip
    table = markdown_table(
        headers,
        [[r["pattern"], r["client"], r["records"], r["p50_ms"], r["p99_ms"], r["client_cpu_ms"],
          r["kafka_cpu_ms"], r["host_slow_pct"]] for r in rows],
    )  # fmt: skip
    report = (
        f"# Kafka clients {run_id}\n\n{args.rate} records/s, {args.seconds:g} s measured per "
        f"step after {WARM_UP_S:g} s of warm-up, {args.rounds} alternated rounds, "
        f"{PARTITIONS} partitions, {len(RECORD)} B records.\n\n"
        "api: each record produced on its own and awaited, then read back read-committed; "
        "processor: batches consumed, three records out per record in and the offsets in one "
        "transaction at a time. CPU per record: the client's process (every thread) and the "
        "broker, over the measured window.\n\n" + table + "\n"
    )
    print(report)
    save_results(run_id, "kafka-clients", report, {"rows": rows, "rate": args.rate})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
