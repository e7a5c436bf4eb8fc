"""Topic ids from the real broker (Metadata v12): what tells a recreated topic from the old."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient

from optisync_common.topic_ids import topic_ids
from optisync_common.topics import ensure_internal_topics


async def recreate_topic(bootstrap: str, topic: str) -> None:
    """Delete the topic and create it again under its name, with one partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()
    for _ in range(100):  # deletion completes in the background
        if topic not in await topic_ids(bootstrap, [topic]):
            break
        await asyncio.sleep(0.1)
    await ensure_internal_topics(bootstrap, [(topic, 1, {})])


async def test_a_recreated_topic_has_another_id(settings, unique_id):
    topic = f"itest-topic-ids-{unique_id}"
    await ensure_internal_topics(settings.kafka_bootstrap, [(topic, 1, {})])
    first = await topic_ids(settings.kafka_bootstrap, [topic, f"{topic}-missing"])
    assert list(first) == [topic]
    assert first == await topic_ids(settings.kafka_bootstrap, [topic])  # stable

    await recreate_topic(settings.kafka_bootstrap, topic)
    again = await topic_ids(settings.kafka_bootstrap, [topic])
    assert again.keys() == {topic} and again[topic] != first[topic]
