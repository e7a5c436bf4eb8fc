"""Property-based fuzzing of the booking API from its own OpenAPI schema (schemathesis): no
generated request, valid (positive) or not (negative), may get a server error from the
running service. Every operation of the schema is fuzzed."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

pytestmark = pytest.mark.e2e

EXAMPLES = 15  # per operation and mode: ~700 requests in all


def _fuzz(
    operation: Any, mode: GenerationMode, failures: list[str], statuses: Counter[int]
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES, deadline=None, database=None,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    def run(case: Any) -> None:
        response = case.call(timeout=30)
        statuses[response.status_code // 100 * 100] += 1
        if response.status_code >= 500:
            failures.append(
                f"{case.method} {case.formatted_path} {case.query} {case.body!r:.200} -> "
                f"{response.status_code}: {response.text[:300]}"
            )

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid (an operation without inputs)
        assert mode is GenerationMode.NEGATIVE


def test_no_request_gets_a_server_error(running_stack: dict[str, str]) -> None:
    schema = schemathesis.openapi.from_url(f"{running_stack['booking-api']}/openapi.json")
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 15  # bookings, stores, customers, commands, waitlist, offers
    for operation in operations:
        for mode in GenerationMode:
            _fuzz(operation, mode, failures, statuses)
    assert not failures, "\n".join(failures[:20])
    # It reached the handlers, not just the validation: answers of both kinds came back.
    assert statuses[200] > 0 and statuses[400] > 100, statuses
