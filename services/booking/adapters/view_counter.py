"""Top of the funnel: availability reads counted in memory and published once a second as
`AvailabilityViewed` facts (one per store, day shown, exam type and channel, with `count`).

A fact per read would put a Kafka send on the hottest route; a counter increment costs
nothing. What a crash loses is at most one interval's counts of one API process: analytics
reads views as a trend, not as money.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections import Counter
from zoneinfo import ZoneInfo

from optisync_common.clock import Clock
from optisync_common.logging import get_logger
from optisync_common.resources import Resources
from schemas.envelope import new_envelope
from schemas.events.base import Channel
from schemas.events.facts import AvailabilityViewed
from services.booking.adapters.views import RedisViews

log = get_logger(__name__)

ViewKey = tuple[str, dt.date, str, Channel]


class ViewCounter:
    def __init__(
        self,
        resources: Resources,
        views: RedisViews,
        clock: Clock,
        region: str,
        interval_s: float = 1.0,
    ) -> None:
        self.resources = resources
        self.views = views
        self.clock = clock
        self.region = region
        self.interval_s = interval_s
        self._counts: Counter[ViewKey] = Counter()
        self._task: asyncio.Task[None] | None = None

    def record(self, store_id: str, viewed: dt.date, exam_type: str, channel: Channel) -> None:
        self._counts[(store_id, viewed, exam_type, channel)] += 1

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="availability-views")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.flush()  # what was counted since the last interval
        except Exception:
            log.warning("availability_views_not_published", exc_info=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.flush()
            except Exception:  # the broker away: these counts are lost, the next ones are not
                log.warning("availability_views_not_published", exc_info=True)

    async def flush(self) -> int:
        counts, self._counts = self._counts, Counter()
        now = self.clock.now()
        for (store_id, viewed, exam_type, channel), count in counts.items():
            fact = AvailabilityViewed(
                store_id=store_id,
                local_date=await self._local_date(store_id, now),
                viewed_date=viewed,
                exam_type=exam_type,
                channel=channel,
                count=count,
            )
            envelope = new_envelope(
                fact, region=self.region, store_id=store_id,
                correlation_id=f"views:{store_id}", occurred_at=now,
            )  # fmt: skip
            await self.resources.publisher.publish(envelope)
        return len(counts)

    async def _local_date(self, store_id: str, now: dt.datetime) -> dt.date:
        catalog = await self.views.catalog(store_id)
        tz = ZoneInfo(catalog.timezone) if catalog and catalog.timezone else dt.UTC
        return now.astimezone(tz).date()
