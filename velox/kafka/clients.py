"""Kafka clients made the one way Velox uses them, and the reads every reader shares.

Consumers read committed messages only and commit by hand; producers take
``client_config.PRODUCER_DEFAULTS`` (idempotent, ``acks=all``, murmur2).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from velox.errors import KafkaUnreachable, VeloxError
from velox.kafka.client_config import PRODUCER_DEFAULTS, client_config, last_refusal
from velox.settings import Settings


def admin_client(settings: Settings, **overrides: Any) -> AdminClient:
    return AdminClient({**client_config(settings), **overrides})


def producer(settings: Settings, **overrides: Any) -> Producer:
    return Producer({**client_config(settings), **PRODUCER_DEFAULTS, **overrides})


def send(producer: Producer, topic: str, **message: Any) -> None:
    """``producer.produce``, waiting while librdkafka's local queue is full instead of failing."""
    while True:
        try:
            producer.produce(topic, **message)
            return
        except BufferError:  # the local queue is full: let librdkafka deliver some
            producer.poll(0.05)


@contextmanager
def acknowledged(producer: Producer, what: str) -> Iterator[Callable[[Any, Message], None]]:
    """An ``on_delivery`` for each message sent in the block; at its end every one of them is
    acknowledged, or a VeloxError says how many of ``what`` were not."""
    failures: list[object] = []
    yield lambda error, _message: error and failures.append(error)
    if producer.flush(60) != 0 or failures:
        raise VeloxError(f"{len(failures)} {what} were not acknowledged: {failures[:3]}")


def consumer(settings: Settings, group: str, **overrides: Any) -> Consumer:
    config = {
        **client_config(settings),
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    }
    return Consumer({**config, **overrides})



def metadata(settings: Settings, admin: AdminClient, topic: str | None = None, timeout: float = 30) -> Any:
    """``admin.list_topics``; when the cluster does not answer within ``timeout``, or at once when it
    refuses our credentials or TLS, a ``KafkaUnreachable`` that names the bootstrap servers and why."""
    deadline = time.monotonic() + timeout
    last_refusal.pop("last", None)
    while True:
        try:
            return admin.list_topics(topic, timeout=min(2.0, max(deadline - time.monotonic(), 0.1)))
        except KafkaException as exc:
            admin.poll(0)  # serves the error callbacks: a refusal, if that is what it was
            refused = last_refusal.get("last")
            if refused or time.monotonic() >= deadline:
                why = refused or exc.args[0].str()
                raise KafkaUnreachable(f"Kafka at {settings.bootstrap} did not answer: {why}") from None



def arrived(reader: Consumer, most: int, wait: float) -> list[Message]:
    """One message (waiting up to ``wait`` seconds for it), then whatever has arrived with it.

    ``consume(n, timeout)`` alone waits the whole timeout unless n messages come: at the end of a
    short range, every call would.
    """
    messages = reader.consume(1, timeout=wait)
    return messages + reader.consume(most - 1, timeout=0) if messages else messages


def read_range(settings: Settings, topic: str, partition: int, start: int, end: int,
               most: int = 10_000) -> Iterator[list[Message]]:
    """Messages of one partition with offsets in [start, end), in order, as they arrive: lists of
    up to ``most`` (what its readers write at once)."""
    if start >= end:
        return
    reader = consumer(settings, group=f"{settings.app_id}-replay")
    tp = TopicPartition(topic, partition)
    try:
        reader.assign([TopicPartition(topic, partition, start)])
        while reader.position([tp])[0].offset < end:
            if batch := [m for m in arrived(reader, most, 1.0) if m.error() is None and m.offset() < end]:
                yield batch
    finally:
        reader.close()


