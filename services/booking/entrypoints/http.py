"""`python -m services.booking.entrypoints.http`: the booking HTTP service."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from fastapi import FastAPI

from optisync_common.clock import SystemClock
from optisync_common.http import create_app, serve
from optisync_common.resources import NotReady, Resources
from services.booking.adapters.bookings import BookingRepository
from services.booking.adapters.replies import CommandOutcomes, ReplyWaiter, Tap
from services.booking.adapters.view_counter import ViewCounter
from services.booking.adapters.views import RedisViews
from services.booking.api.commands import CommandGateway
from services.booking.api.deps import BookingContext
from services.booking.api.fast_bookings import FastBookingRequests
from services.booking.api.fast_reads import FastAvailabilityReads
from services.booking.api.main import api_router
from services.booking.settings import BookingSettings, get_settings
from services.booking.web.routes import PagesRuntime
from services.booking.web.routes import router as pages_router


class _Background:
    """What the API runs besides requests: the reply waiter (checked by /readyz) and the
    follower that keeps the in-memory copy of the Redis views coherent."""

    def __init__(self, settings: BookingSettings, taps: Sequence[Tap] = ()) -> None:
        self.settings = settings
        self.taps = taps  # the rest of the process's readers of every booking event
        self.waiter: ReplyWaiter | None = None
        self.follower: asyncio.Task[None] | None = None
        self.view_counter: ViewCounter | None = None

    async def start(self, app: FastAPI, resources: Resources) -> None:
        if resources.redis is None:
            raise NotReady("the booking API needs Redis")
        prefix = self.settings.redis_prefix
        views = RedisViews(resources.redis, prefix, cache=True)
        self.follower = asyncio.create_task(views.follow_changes(), name="view-changes")
        outcomes = CommandOutcomes(resources.redis, prefix, self.settings.idempotency_ttl_s)
        self.waiter = ReplyWaiter(
            self.settings,
            outcomes,
            linger_s=self.settings.hot_fetch_linger_ms / 1000,
            taps=self.taps,
        )
        await self.waiter.start()
        repo = BookingRepository(resources.db)
        self.view_counter = ViewCounter(resources, views, SystemClock(), self.settings.region)
        self.view_counter.start()
        app.state.booking = BookingContext(
            views=views,
            repo=repo,
            outcomes=outcomes,
            gateway=CommandGateway(self.settings, resources, self.waiter, repo),
            view_counter=self.view_counter,
        )

    async def stop(self, app: FastAPI, resources: Resources) -> None:
        if self.view_counter is not None:
            await self.view_counter.stop()
        if self.follower is not None:
            self.follower.cancel()
            await asyncio.gather(self.follower, return_exceptions=True)
        if self.waiter is not None:
            await self.waiter.stop()

    async def check(self) -> None:
        if self.waiter is None:
            raise NotReady("not started")
        await self.waiter.check()


def build_app(settings: BookingSettings) -> FastAPI:
    pages = PagesRuntime.create(settings)  # live updates + store directory of the pages
    background = _Background(settings, taps=[pages.feed.booking_event])
    return create_app(
        settings,
        title="OptiSync booking",
        description="Bookings from every channel, decided by the availability processor.",
        routers=[api_router, pages_router],
        on_startup=[background.start, pages.on_startup],
        on_shutdown=[pages.on_shutdown, background.stop],
        extra_checks={"replies": background.check},
        middleware=[FastAvailabilityReads, FastBookingRequests],
    )


settings = get_settings()
app = build_app(settings)

if __name__ == "__main__":
    serve(app, settings)
