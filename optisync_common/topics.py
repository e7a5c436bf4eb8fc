"""Create or update Kafka topics from the registry in `schemas/topics.yaml`, idempotently.

Missing topics are created; existing ones get more partitions when the registry asks for more
(never fewer: Kafka cannot shrink a topic) and their configs brought in line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.admin.new_topic import NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from schemas.registry import DEFAULT_REGIONS, TopicSpec, load_registry


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    partitions_added: list[str] = field(default_factory=list)
    configs_updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"topics: {len(self.created)} created, {len(self.partitions_added)} grown, "
            f"{len(self.configs_updated)} reconfigured, {len(self.unchanged)} unchanged"
        )


async def apply_registry(
    bootstrap: str,
    *,
    regions: Sequence[str] = DEFAULT_REGIONS,
    replication_factor: int = 1,
    log: Callable[[str], object] = lambda _: None,
) -> ApplyReport:
    specs = load_registry(regions)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        return await _apply(admin, list(specs.values()), replication_factor, log)
    finally:
        await admin.close()


async def _apply(
    admin: AIOKafkaAdminClient,
    specs: list[TopicSpec],
    replication_factor: int,
    log: Callable[[str], object],
) -> ApplyReport:
    report = ApplyReport()
    existing = await _partition_counts(admin, [s.name for s in specs])
    missing = [s for s in specs if s.name not in existing]
    if missing:
        new = [
            NewTopic(s.name, s.partitions, replication_factor, topic_configs=s.kafka_config())
            for s in missing
        ]
        # A concurrent apply may win the race; the next run checks the shape it left.
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(new)
        await _wait_visible(admin, [s.name for s in missing])
        report.created.extend(s.name for s in missing)
        for s in missing:
            log(f"  created {s.name} ({s.partitions} partitions, {s.scope})")
    for spec in specs:
        if spec.name not in existing:
            continue
        changed = False
        have = existing[spec.name]
        if have < spec.partitions:
            await admin.create_partitions({spec.name: NewPartitions(spec.partitions)})
            report.partitions_added.append(spec.name)
            log(f"  grew {spec.name}: {have} -> {spec.partitions} partitions")
            changed = True
        elif have > spec.partitions:
            report.warnings.append(
                f"{spec.name} has {have} partitions, registry says {spec.partitions}; "
                "Kafka cannot shrink a topic, leaving it"
            )
        if await _configs_differ(admin, spec):
            resource = ConfigResource(ConfigResourceType.TOPIC, spec.name, spec.kafka_config())
            await admin.alter_configs([resource])
            report.configs_updated.append(spec.name)
            log(f"  reconfigured {spec.name}")
            changed = True
        if not changed:
            report.unchanged.append(spec.name)
    for warning in report.warnings:
        log(f"  warning: {warning}")
    log(f"  {report.summary()}")
    return report


async def ensure_internal_topics(
    bootstrap: str, topics: Sequence[tuple[str, int, dict[str, str]]], replication_factor: int = 1
) -> list[str]:
    """Create stream-framework topics (faust changelogs) that the registry does not list, and
    wait until they are visible, so a worker never starts against half-made metadata."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        present = set(await admin.list_topics())
        missing = [t for t in topics if t[0] not in present]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(n, p, replication_factor, topic_configs=c) for n, p, c in missing]
                )
            await _wait_visible(admin, [n for n, _, _ in missing])
        return [n for n, _, _ in missing]
    finally:
        await admin.close()


async def _wait_visible(admin: AIOKafkaAdminClient, names: list[str], within_s: float = 15) -> None:
    """Creation is asynchronous in KRaft: wait until the metadata shows every new topic, so
    whoever runs next (services, the next apply) sees them."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not set(names) <= set(await admin.list_topics()):
        if loop.time() > deadline:
            raise TimeoutError(f"topics not visible after {within_s}s: {sorted(names)}")
        await asyncio.sleep(0.1)


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    present = set(await admin.list_topics())
    wanted = [n for n in names if n in present]
    if not wanted:
        return {}
    described = await admin.describe_topics(wanted)
    return {t["topic"]: len(t["partitions"]) for t in described}


async def _configs_differ(admin: AIOKafkaAdminClient, spec: TopicSpec) -> bool:
    resource = ConfigResource(ConfigResourceType.TOPIC, spec.name)
    responses = await admin.describe_configs([resource])
    current: dict[str, str] = {}
    for response in responses:
        for resource_result in response.resources:
            for entry in resource_result[4]:
                current[entry[0]] = entry[1]
    return any(current.get(k) != v for k, v in spec.kafka_config().items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("command", choices=["apply"])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--regions", default=",".join(DEFAULT_REGIONS))
    args = parser.parse_args(argv)
    print(f"[topics] applying schemas/topics.yaml to {args.bootstrap}", flush=True)
    asyncio.run(apply_registry(args.bootstrap, regions=args.regions.split(","), log=print))
    # Warnings (a topic with more partitions than registered) do not fail the apply.
    return 0


if __name__ == "__main__":
    sys.exit(main())
