"""Session fixtures: the real Kafka, Redis and FerretDB, started once per run by the same
launcher `make up` uses (profile `test`, ports offset by 1000 so a running `make up` is left
alone). Tests isolate by unique ids, never by restarting servers.

Set OPTISYNC_KEEP_INFRA=1 to leave the servers running between local runs (faster).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright, expect

from deploy.local import infra
from optisync_common.topics import apply_registry

# Small offsets keep every port below 32768, outside the kernel's ephemeral range. Two checkouts
# testing at once on one machine pick different offsets (and so different `.run/` profiles).
TEST_PORT_OFFSET = int(os.environ.get("OPTISYNC_TEST_PORT_OFFSET", "1000"))
TEST_PROFILE = "test" if TEST_PORT_OFFSET == 1000 else f"test{TEST_PORT_OFFSET}"


@pytest.fixture(scope="session")
def port_offset() -> int:
    return TEST_PORT_OFFSET


@pytest.fixture(scope="session")
def infra_config() -> infra.InfraConfig:
    return infra.InfraConfig.from_env(TEST_PROFILE, port_offset=TEST_PORT_OFFSET)


@pytest.fixture(scope="session")
def endpoints(infra_config: infra.InfraConfig) -> Iterator[infra.Endpoints]:
    already_running = all(pid is not None for pid in infra.status(infra_config).values())
    eps = infra.up(infra_config)

    asyncio.run(apply_registry(eps.kafka_bootstrap))
    yield eps
    if not already_running and os.environ.get("OPTISYNC_KEEP_INFRA") != "1":
        infra.down(infra_config)


# Debian's chromium on a machine without internet: no first-run, sync, update or background
# traffic (otherwise it keeps opening connections the closed network refuses).
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parent.parent / ".run" / "artifacts"
# Pages follow Kafka and MongoDB: on a loaded 2-core CI box 5 s (the default) is not enough.
expect.set_options(timeout=15_000)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Headless Debian chromium driven by Playwright (`make test` apt-installs chromium)."""
    executable = infra.ensure_chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        await launched.close()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where browser tests save screenshots (kept after the run: `.run/artifacts/`)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def unique_id() -> str:
    return uuid.uuid4().hex[:12]


_LAYERS = {"unit": 0, "integration": 1, "e2e": 2}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Unit, then integration, then e2e: fast feedback first, and the e2e stack (with the real
    availability processor, kept for the rest of the session) never runs beside integration
    tests that stand in for the processor on the same broker."""
    tests_dir = Path(__file__).parent

    def layer(item: pytest.Item) -> int:
        try:
            return _LAYERS.get(Path(item.path).relative_to(tests_dir).parts[0], 1)
        except ValueError:
            return 1

    items.sort(key=layer)  # stable: the order within a layer is kept
