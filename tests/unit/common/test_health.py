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


async def test_a_hanging_shutdown_hook_is_given_up_and_the_next_one_still_runs(monkeypatch):
    from optisync_common import http
    from optisync_common.settings import ServiceSettings

    monkeypatch.setattr(http, "SHUTDOWN_HOOK_S", 0.1)
    ran: list[str] = []

    async def hangs(app: object, resources: object) -> None:
        ran.append("hangs")
        await asyncio.Event().wait()

    async def next_one(app: object, resources: object) -> None:
        ran.append("next")

    app = http.create_app(
        ServiceSettings(service_name="t", environment="test"),
        title="t", description="t", kafka=False, mongo=False, redis=False,
        on_shutdown=[hangs, next_one],
    )  # fmt: skip
    async with asyncio.timeout(5):
        async with app.router.lifespan_context(app):
            pass
    assert ran == ["hangs", "next"]
