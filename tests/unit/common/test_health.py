import asyncio

from optisync_common.health import run_checks


async def test_all_ok_is_ready():
    async def ok() -> None:
        return None

    ready, report = await run_checks({"a": ok, "b": ok})
    assert ready
    assert report == {"a": "ok", "b": "ok"}


async def test_a_failing_or_hanging_check_is_reported_not_raised():
    async def broken() -> None:
        raise ConnectionError("refused")

    async def hangs() -> None:
        await asyncio.sleep(10)

    async def ok() -> None:
        return None

    ready, report = await run_checks({"db": broken, "kafka": hangs, "redis": ok}, per_check_s=0.1)
    assert not ready
    assert report["db"].startswith("failed: ConnectionError: refused")
    assert report["kafka"].startswith("failed: TimeoutError")
    assert report["redis"] == "ok"
