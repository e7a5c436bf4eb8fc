"""Readiness checks: each returns normally when its dependency answers, raises otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

ReadinessCheck = Callable[[], Awaitable[Any]]


async def run_checks(
    checks: Mapping[str, ReadinessCheck], per_check_s: float = 2.0
) -> tuple[bool, dict[str, str]]:
    async def one(check: ReadinessCheck) -> str:
        try:
            await asyncio.wait_for(check(), per_check_s)
            return "ok"
        except Exception as exc:  # the reason is reported, not raised
            return f"failed: {type(exc).__name__}: {exc}"[:300]

    results = await asyncio.gather(*(one(check) for check in checks.values()))
    report = dict(zip(checks.keys(), results, strict=True))
    return all(result == "ok" for result in results), report
