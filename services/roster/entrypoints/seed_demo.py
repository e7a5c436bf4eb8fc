"""Load the demo chain: write it to the roster's MongoDB and publish it on roster.events.v1.

Idempotent: event ids are derived from stable ids, and a chain already seeded for the same
week is skipped, so a second `make up` changes nothing.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from optisync_common.resources import open_resources
from schemas.envelope import deterministic_event_id, new_envelope
from services.roster.adapters.events import chain_events
from services.roster.adapters.repository import RosterRepository
from services.roster.domain import demo
from services.roster.settings import RosterSettings


async def seed_demo_chain(settings: RosterSettings, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    first_day = now.astimezone(ZoneInfo(demo.TZ)).date()
    chain = demo.demo_chain(first_day)
    marker = f"demo-chain:{first_day.isoformat()}"
    async with open_resources(settings, redis=False) as res:
        repo = RosterRepository(res.db)
        await repo.ensure_indexes()
        if await repo.is_seeded(marker):
            return f"demo chain for the week of {first_day} already loaded"
        await res.wait_for_kafka()
        published = 0
        for store_id, stable_id, payload in chain_events(chain):
            await repo.save(payload)
            envelope = new_envelope(
                payload,
                region=demo.REGION,
                store_id=store_id,
                correlation_id=marker,
                occurred_at=now,
                event_id=deterministic_event_id(marker, stable_id),
            )
            await res.publisher.publish(envelope)
            published += 1
        summary = (
            f"demo chain loaded: {len(chain.stores)} stores, {len(chain.optometrists)} "
            f"optometrists, {len(chain.shifts)} shifts from {first_day} ({published} events)"
        )
        await repo.mark_seeded(marker, summary)
        return summary


def main() -> int:
    print(asyncio.run(seed_demo_chain(RosterSettings())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
