"""A topic's id: what tells a topic from one deleted and created again under its name.

Offsets start over in a recreated topic, so a local copy of a changelog that remembers only
the topic's name and an offset could take the new topic for the old one once it has grown past
that offset. aiokafka 0.14 asks for metadata up to version 5, which has no topic ids (they came
with version 10, Kafka 2.8), so this sends Metadata v12 itself, the version Kafka 3.x answers.
"""

from __future__ import annotations

import uuid
from io import BytesIO

from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.abstract import AbstractType
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

METADATA_API_KEY = 3
NO_TOPIC_ID = uuid.UUID(int=0)  # what Kafka sends for "no id", and expects with a name


class _Uuid(AbstractType[uuid.UUID]):  # type: ignore[misc]
    @classmethod
    def encode(cls, value: uuid.UUID) -> bytes:
        return value.bytes

    @classmethod
    def decode(cls, data: BytesIO) -> uuid.UUID:
        raw = data.read(16)
        if len(raw) != 16:
            raise ValueError("Buffer underrun decoding a UUID")
        return uuid.UUID(bytes=raw)


# Named like aiokafka's own `MetadataRequest_v5` and the rest.
class MetadataResponse_v12(Response):  # type: ignore[misc]
    API_KEY = METADATA_API_KEY
    API_VERSION = 12
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "brokers",
            CompactArray(
                ("node_id", Int32),
                ("host", CompactString("utf-8")),
                ("port", Int32),
                ("rack", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("cluster_id", CompactString("utf-8")),
        ("controller_id", Int32),
        (
            "topics",
            CompactArray(
                ("error_code", Int16),
                ("name", CompactString("utf-8")),
                ("topic_id", _Uuid),
                ("is_internal", Boolean),
                (
                    "partitions",
                    CompactArray(
                        ("error_code", Int16),
                        ("partition_index", Int32),
                        ("leader_id", Int32),
                        ("leader_epoch", Int32),
                        ("replica_nodes", CompactArray(Int32)),
                        ("isr_nodes", CompactArray(Int32)),
                        ("offline_replicas", CompactArray(Int32)),
                        ("tags", TaggedFields),
                    ),
                ),
                ("topic_authorized_operations", Int32),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class MetadataRequest_v12(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = METADATA_API_KEY
    API_VERSION = 12
    RESPONSE_TYPE = MetadataResponse_v12
    SCHEMA = Schema(
        (
            "topics",
            CompactArray(
                ("topic_id", _Uuid),
                ("name", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("allow_auto_topic_creation", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


class TopicIdsRequest(Request[MetadataRequest_v12]):  # type: ignore[misc]
    API_KEY = METADATA_API_KEY

    def __init__(self, topics: list[str]) -> None:
        self._topics = topics

    def build(self, request_struct_class: type[MetadataRequest_v12]) -> MetadataRequest_v12:
        return request_struct_class(
            [(NO_TOPIC_ID, name, {}) for name in self._topics], False, False, {}
        )


async def topic_ids(bootstrap: str, topics: list[str]) -> dict[str, uuid.UUID]:
    """The ids of those of `topics` that exist. Empty where the broker predates topic ids
    (Metadata v10+ unknown to it): then nobody can tell, and callers go by name as before."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap, client_id="optisync-topic-ids")
    await client.bootstrap()
    try:
        request = TopicIdsRequest(topics)
        try:
            response = await client.send(client.get_random_node(), request)
        except NotImplementedError:  # the broker answers no Metadata version this client has
            return {}
    finally:
        await client.close()
    return {
        name: topic_id
        for error_code, name, topic_id, *_ in response.topics
        if error_code == 0 and topic_id != NO_TOPIC_ID
    }
