"""`python -m services.roster.entrypoints.http`: the roster HTTP service, its outbox sweeper
and its projection of booking events (both background tasks of the lifespan)."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from optisync_common.clock import Clock, SystemClock
from optisync_common.http import create_app, serve
from optisync_common.problems import problem_response
from optisync_common.resources import Resources
from services.roster.adapters.bookings import BookingProjection
from services.roster.adapters.commands import RosterCommands
from services.roster.adapters.outbox import Outbox
from services.roster.adapters.repository import RosterRepository
from services.roster.api.routes import router
from services.roster.domain.rules import RosterViolation
from services.roster.settings import RosterSettings, get_settings


class _Background:
    def __init__(self, settings: RosterSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.projection: BookingProjection | None = None
        self.sweeper: asyncio.Task[None] | None = None

    async def start(self, app: FastAPI, resources: Resources) -> None:
        repo = RosterRepository(resources.db)
        await repo.ensure_indexes()
        outbox = Outbox(resources.db, lambda: resources.publisher)
        await outbox.ensure_indexes()
        await outbox.recover()  # a batch a crash left half done is finished first
        app.state.commands = RosterCommands(repo, outbox, self.clock, self.settings.region)
        app.state.clock = self.clock
        self.sweeper = asyncio.create_task(outbox.sweep_forever(self.settings.outbox_sweep_s))
        self.projection = BookingProjection(
            self.settings, repo, self.settings.bookings_group, self.settings.bookings_offset_reset
        )
        await self.projection.start()
        app.state.projection = self.projection

    async def stop(self, app: FastAPI, resources: Resources) -> None:
        if self.projection is not None:
            await self.projection.stop()
        if self.sweeper is not None:
            self.sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.sweeper

    async def check(self) -> None:
        if self.projection is None:
            raise RuntimeError("not started")
        await self.projection.check()


async def _violation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RosterViolation)
    return problem_response(
        exc.status,
        exc.reason,
        exc.detail,
        reason=exc.reason,
        **exc.extra,  # type: ignore[arg-type]
    )


def build_app(settings: RosterSettings, clock: Clock | None = None) -> FastAPI:
    background = _Background(settings, clock or SystemClock())
    app = create_app(
        settings,
        title="OptiSync roster",
        description="Stores, optometrists, exam types, shifts, leave and training; drafts are "
        "published explicitly and every published change goes out on roster.events.v1.",
        routers=[router],
        redis=False,
        on_startup=[background.start],
        on_shutdown=[background.stop],
        extra_checks={"booking_events": background.check},
    )
    app.add_exception_handler(RosterViolation, _violation)
    return app


settings = get_settings()
app = build_app(settings)

if __name__ == "__main__":
    serve(app, settings)
