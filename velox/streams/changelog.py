"""What a worker produces beside its tables: user-state records to the changelog, dead letters,
and how far each partition's changelog records are acknowledged.

One librdkafka producer for all of it, so the changelog keeps each partition's records in the
order they were written to the table. ``delivered`` rises with each acknowledgement; a commit
(``velox.streams.checkpoint``) waits until what was sent before it is acknowledged, then lets each
table remember it. It can wait by ``flush``, or, without stopping the stream, by asking
``acknowledged`` with a ``mark`` taken when it began: messages are counted sent and acknowledged
per topic partition, and librdkafka reports a partition's deliveries in the order they were sent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

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
        self.sent: Counter[tuple[str, int]] = Counter()  # messages sent, per topic partition
        self.acked: Counter[tuple[str, int]] = Counter()  # and reported delivered (or failed)
        self.producer: Producer = clients.producer(settings, on_delivery=self._on_delivery)

    def record(self, key: bytes, value: bytes | None, partition: int) -> None:
        """Send one user-state record (or a marker) to the partition's changelog."""
        self.send(self.topic, partition, key=key, value=value)

    def dead_letter(self, key: bytes | None, value: bytes | None, partition: int,
                    headers: list[tuple[str, bytes]]) -> None:
        self.send(self.dead_letters, partition, key=key, value=value, headers=headers)

    def send(self, topic: str, partition: int, after: Callable[[KafkaError | None, Message], None] | None = None,
             **message: object) -> None:
        """Send a message a commit must wait for (and call ``after`` with its delivery report)."""
        self.sent[(topic, partition)] += 1
        if after is None:
            clients.send(self.producer, topic, partition=partition, **message)
        else:
            clients.send(self.producer, topic, partition=partition, **message,
                         on_delivery=lambda error, sent: (self._on_delivery(error, sent), after(error, sent)))

    def mark(self) -> dict[tuple[str, int], int]:
        """What has been sent so far: ``acknowledged`` says when all of it is."""
        return dict(self.sent)

    def acknowledged(self, mark: dict[tuple[str, int], int]) -> bool:
        """Whether every message sent before ``mark`` is acknowledged (deliveries are reported from
        ``producer.poll``); a failed one raises, as ``flush`` does."""
        self._raise_failures()
        return all(self.acked[tp] >= sent for tp, sent in mark.items())

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        self.acked[(message.topic(), message.partition())] += 1
        if error is not None:
            self.failures.append(error)
        elif message.topic() == self.topic and message.offset() is not None:
            # No offset: a retry the broker had already written (DUPLICATE_SEQUENCE_NUMBER). The mark
            # stays lower, so a recovery reads a few records more, never fewer.
            partition = message.partition()
            self.delivered[partition] = max(self.delivered.get(partition, -1), message.offset())

    def flush(self) -> None:
        """Wait until every changelog record and dead letter sent so far is acknowledged."""
        if self.producer.flush(30) != 0:
            raise ChangelogFailed("changelog or dead-letter writes not acknowledged within 30 s")
        self._raise_failures()

    def _raise_failures(self) -> None:
        if self.failures:
            raise ChangelogFailed(f"changelog or dead-letter writes failed: {self.failures[:3]}")

    def forget(self, partitions: list[int]) -> None:
        for partition in partitions:
            self.delivered.pop(partition, None)
