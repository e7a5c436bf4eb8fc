from __future__ import annotations

import pytest

from deploy.local.infra import Endpoints
from optisync_common.settings import ServiceSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(endpoints: Endpoints) -> ServiceSettings:
    return endpoints.settings(ServiceSettings, service_name="itest", environment="test")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)
