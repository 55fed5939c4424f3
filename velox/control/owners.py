"""Which worker owns each partition and where its edge answers: the compacted ``owners`` topic.

Workers announce (``announce``); edges follow (``Owners``) and forward a request for a user to
the edge beside the worker that owns the user's partition.
"""

from __future__ import annotations

import time

from confluent_kafka import Producer

from velox.control import compacted
from velox.kafka import topic_admin
from velox.schemas import ownership
from velox.schemas.ownership import Ownership
from velox.settings import Settings


def topic(settings: Settings) -> str:
    return settings.topic("owners")


def ensure_topic(settings: Settings) -> None:
    topic_admin.create_topics(settings, {topic(settings): 1}, {"cleanup.policy": "compact"})


def announce(settings: Settings, producer: Producer, partitions: list[int]) -> None:
    """Say, as this worker, that it owns exactly ``partitions`` now (empty when it stops)."""
    claim = Ownership(settings.worker_id, settings.edge_url, sorted(partitions), time.time())
    producer.produce(topic(settings), key=settings.worker_id.encode(), value=ownership.encode(claim))
    producer.flush(30)


class Owners:
    """Each partition's owner as announced, kept current by a background thread."""

    def __init__(self, settings: Settings) -> None:
        ensure_topic(settings)
        self.table = compacted.FollowedTable(settings, topic(settings), ownership.decode)
        self.seen = -1
        self.by_partition: dict[int, Ownership] = {}

    def of(self, partition: int) -> Ownership | None:
        if self.seen != self.table.changes:
            self.seen = self.table.changes
            self.by_partition = ownership.owners(list(self.table.rows.values()))
        return self.by_partition.get(partition)

    def close(self) -> None:
        self.table.close()
