"""Session fixtures: the real Kafka, Redis and FerretDB, started once per run by the same
launcher `make up` uses (profile `test`, ports offset by 10000 so a running `make up` is left
alone). Tests isolate by unique ids, never by restarting servers.

Set OPTISYNC_KEEP_INFRA=1 to leave the servers running between local runs (faster).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import pytest

from deploy.local import infra
from optisync_common.topics import apply_registry

TEST_PORT_OFFSET = 10000


@pytest.fixture(scope="session")
def port_offset() -> int:
    return TEST_PORT_OFFSET


@pytest.fixture(scope="session")
def infra_config() -> infra.InfraConfig:
    return infra.InfraConfig.from_env("test", port_offset=TEST_PORT_OFFSET)


@pytest.fixture(scope="session")
def endpoints(infra_config: infra.InfraConfig) -> Iterator[infra.Endpoints]:
    already_running = all(pid is not None for pid in infra.status(infra_config).values())
    eps = infra.up(infra_config)

    asyncio.run(apply_registry(eps.kafka_bootstrap))
    yield eps
    if not already_running and os.environ.get("OPTISYNC_KEEP_INFRA") != "1":
        infra.down(infra_config)


@pytest.fixture
def unique_id() -> str:
    return uuid.uuid4().hex[:12]
