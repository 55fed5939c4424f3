"""Kafka clients configured the one way Velox uses them.

Producers are idempotent with ``acks=all`` and use the murmur2 partitioner, the same hash
as the Java client and aiokafka (Faust), so every process agrees which partition owns a user.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from velox.settings import Settings

PRODUCER_DEFAULTS: Mapping[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "partitioner": "murmur2_random",
    "linger.ms": 5,
    "compression.type": "lz4",
}


def producer(settings: Settings, **overrides: Any) -> Producer:
    return Producer({"bootstrap.servers": settings.bootstrap, **PRODUCER_DEFAULTS, **overrides})


def consumer(settings: Settings, group: str, **overrides: Any) -> Consumer:
    config = {
        "bootstrap.servers": settings.bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    }
    return Consumer({**config, **overrides})


def create_topics(settings: Settings, topics: Mapping[str, int], config: Mapping[str, str] | None = None) -> None:
    """Create each topic with its partition count; a topic that exists already is left as it is."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=count, replication_factor=1, config=dict(config or {}))
         for name, count in topics.items()],
        operation_timeout=30,
    )
    for future in futures.values():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
