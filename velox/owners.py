"""Which worker owns each partition and where its edge answers: the compacted ``owners`` topic.

Workers announce (``announce``); edges follow (``Owners``) and forward a request for a user to
the edge beside the worker that owns the user's partition.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from confluent_kafka import Message, Producer

from velox import kafka
from velox.schemas import ownership
from velox.schemas.ownership import Ownership
from velox.settings import Settings


def topic(settings: Settings) -> str:
    return settings.topic("owners")


def ensure_topic(settings: Settings) -> None:
    kafka.create_topics(settings, {topic(settings): 1}, {"cleanup.policy": "compact"})


def announce(settings: Settings, producer: Producer, partitions: list[int]) -> None:
    """Say, as this worker, that it owns exactly ``partitions`` now (empty when it stops)."""
    claim = Ownership(settings.worker_id, settings.edge_url, sorted(partitions), time.time())
    producer.produce(topic(settings), key=settings.worker_id.encode(), value=ownership.encode(claim))
    producer.flush(30)


class Owners:
    """Each partition's owner as announced, kept current by a background thread."""

    def __init__(self, settings: Settings, interval: float = 0.1) -> None:
        ensure_topic(settings)
        self.reader = kafka.CompactedReader(settings, topic(settings))
        self.claims: dict[str, Ownership] = {}
        self._take(self.reader.existing())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, args=(interval,), name="velox-owners", daemon=True)
        self._thread.start()

    def of(self, partition: int) -> Ownership | None:
        return self.by_partition.get(partition)

    def _take(self, messages: Iterable[Message]) -> None:
        for message in messages:
            claim = ownership.decode(message.value())
            self.claims[claim.worker] = claim
        self.by_partition = ownership.owners(list(self.claims.values()))

    def _follow(self, interval: float) -> None:
        while not self._stop.wait(interval):
            if messages := self.reader.new():
                self._take(messages)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.reader.close()
