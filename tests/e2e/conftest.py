from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from playwright.async_api import expect

from deploy.local import infra, stack

# The pages show what MongoDB and Redis hold, which follow a decision by a second or two (more on
# a busy host), and some re-read on a timer (the optometrist's day every 3 s). Playwright's 5 s
# default for assertions was too tight for that under load: with two CPU-burning loops beside
# the suite, the optometrist's day took up to about 20 s to show a new booking.
expect.set_options(timeout=30_000)

# Settings the e2e stack runs with: waitlist holds short enough to watch them lapse, and an
# analytics aggregator that counts from now on (not the integration tests' history before it).
E2E_ENV = {
    "BOOKING_WAITLIST_HOLD_S": "8",
    "ANALYTICS_CONSUMER_GROUP": f"analytics-e2e-{uuid.uuid4().hex[:8]}",
    "ANALYTICS_CONSUMER_OFFSET_RESET": "latest",
}


@pytest.fixture(scope="session")
def running_stack(
    infra_config: infra.InfraConfig, endpoints: infra.Endpoints, port_offset: int
) -> Iterator[dict[str, str]]:
    """Every service as its own process (as `make up` runs them), shared by the e2e tests."""
    urls = stack.start_services(infra_config, endpoints, port_offset=port_offset, extra_env=E2E_ENV)
    yield urls
    stack.stop_services(infra_config)


@pytest.fixture
def restart_missing(infra_config: infra.InfraConfig, endpoints: infra.Endpoints, port_offset: int):
    """Start whatever service of the stack is not running (after a test killed it)."""

    def restart() -> None:
        stack.start_services(infra_config, endpoints, port_offset=port_offset, extra_env=E2E_ENV)

    return restart
