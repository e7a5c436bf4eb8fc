"""Availability reads reach analytics as `AvailabilityViewed` facts on the real broker: counted
per store, day, exam type and channel, and summed exactly (one fact per interval, `count`)."""

from __future__ import annotations

import asyncio
from collections import Counter

from aiokafka import TopicPartition

from optisync_common.kafka import make_consumer
from schemas.events.facts import AvailabilityViewed
from schemas.registry import BOOKING_FACTS, topic
from schemas.serde import decode
from services.booking.settings import BookingSettings


async def test_reads_are_published_as_summed_view_facts(
    api, store, booking_settings: BookingSettings
) -> None:
    consumer = make_consumer(booking_settings, group_id=None)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(BOOKING_FACTS, p) for p in range(topic(BOOKING_FACTS).partitions)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for p in partitions:  # resolve the end offsets now, before the reads happen
            await consumer.position(p)
        url = f"/v1/stores/{store.store_id}/availability"
        day = store.day.isoformat()
        for channel in ["wechat"] * 5 + ["web"] * 2:
            resp = await api.get(url, params={"date": day, "exam_type": "std", "channel": channel})
            assert resp.status_code == 200, resp.text
        bad = await api.get(url, params={"date": day, "exam_type": "std", "channel": "fax"})
        assert bad.status_code == 422  # an unknown channel is refused, not miscounted

        seen: Counter[str] = Counter()
        deadline = asyncio.get_running_loop().time() + 15
        while sum(seen.values()) < 7 and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for record in (r for records in batch.values() for r in records):
                fact = decode(record.value or b"", list(record.headers or [])).payload
                if isinstance(fact, AvailabilityViewed) and fact.store_id == store.store_id:
                    assert fact.viewed_date == store.day and fact.exam_type == "std"
                    seen[fact.channel.value] += fact.count
        assert seen == {"wechat": 5, "web": 2}
    finally:
        await consumer.stop()
