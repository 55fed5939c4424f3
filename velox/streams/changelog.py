"""What a worker produces beside its tables: user-state records to the changelog, dead letters,
and how far each partition's changelog records are acknowledged.

One librdkafka producer for all of it, so the changelog keeps each partition's records in the
order they were written to the table. ``delivered`` rises with each acknowledgement; a commit
(``velox.streams.checkpoint``) flushes first, then lets each table remember it.
"""

from __future__ import annotations

from confluent_kafka import KafkaError, Message, Producer

from velox.control import topics
from velox.errors import ChangelogFailed
from velox.kafka import clients
from velox.settings import Settings


class Changelog:
    def __init__(self, settings: Settings) -> None:
        self.topic = topics.changelog(settings)
        self.dead_letters = settings.topic("observations-dlq")
        self.delivered: dict[int, int] = {}  # last acknowledged changelog offset, per partition
        self.failures: list[KafkaError] = []
        self.producer: Producer = clients.producer(settings, on_delivery=self._on_delivery)

    def record(self, key: bytes, value: bytes | None, partition: int) -> None:
        """Send one user-state record (or a marker) to the partition's changelog."""
        clients.send(self.producer, self.topic, key=key, value=value, partition=partition)

    def dead_letter(self, key: bytes | None, value: bytes | None, partition: int,
                    headers: list[tuple[str, bytes]]) -> None:
        clients.send(self.producer, self.dead_letters, key=key, value=value, partition=partition, headers=headers)

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.failures.append(error)
        elif message.topic() == self.topic and message.offset() is not None:
            # No offset: a retry the broker had already written (DUPLICATE_SEQUENCE_NUMBER). The mark
            # stays lower, so a recovery reads a few records more, never fewer.
            partition = message.partition()
            self.delivered[partition] = max(self.delivered.get(partition, -1), message.offset())

    def flush(self) -> None:
        """Wait until every changelog record and dead letter sent so far is acknowledged."""
        if self.producer.flush(30) != 0 or self.failures:
            raise ChangelogFailed(f"changelog or dead-letter writes failed: {self.failures[:3]}")

    def forget(self, partitions: list[int]) -> None:
        for partition in partitions:
            self.delivered.pop(partition, None)
