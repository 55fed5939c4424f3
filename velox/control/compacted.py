"""Compacted topics read as tables: what the control plane's topics hold now, then each change.

``model-versions``, ``owners``, ``apps``, ``containers`` and ``items`` are read this way by every process
that needs them; no group offsets are committed, each reader starts from the beginning.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Generic, TypeVar

from confluent_kafka import Message, TopicPartition

from velox.kafka.clients import arrived, consumer
from velox.kafka.positions import watermarks
from velox.settings import Settings

T = TypeVar("T")


class CompactedReader:
    """A compacted one-partition topic read as a table: the records there now, then each new one.

    ``model-versions`` and ``owners`` are read this way by every process; no group offsets are
    committed, each reader starts from the beginning.
    """

    def __init__(self, settings: Settings, topic: str) -> None:
        self.tp = TopicPartition(topic, 0)
        self.reader = consumer(settings, group=f"{settings.app_id}-reader-{uuid.uuid4().hex[:8]}")
        low, self.high = watermarks(self.reader, self.tp)
        self.reader.assign([TopicPartition(topic, 0, low)])

    def existing(self) -> Iterator[Message]:
        """The records written before this reader started."""
        while self.high > 0 and self.reader.position([self.tp])[0].offset < self.high:
            yield from self._read(1.0)

    def new(self) -> list[Message]:
        """Records that arrived since the last call, without waiting."""
        return self._read(0)

    def _read(self, timeout: float) -> list[Message]:
        return [m for m in arrived(self.reader, 100, timeout) if m.error() is None]

    def close(self) -> None:
        self.reader.close()


def merged(rows: Mapping[str, T], messages: Iterable[Message], decode: Callable[[bytes], T | None]) -> dict[str, T]:
    """A copy of ``rows`` with the messages applied: the latest value per key; a null value, or one
    ``decode`` refuses (None: a record this code cannot use, which it logs), deletes."""
    result = dict(rows)
    for message in messages:
        key, value = message.key().decode(), message.value()
        decoded = None if value is None else decode(value)
        if decoded is None:
            result.pop(key, None)
        else:
            result[key] = decoded
    return result


def read_table(settings: Settings, topic: str, decode: Callable[[bytes], T | None]) -> dict[str, T]:
    """A compacted topic as a dict, as it is now (``FollowedTable`` keeps one current)."""
    reader = CompactedReader(settings, topic)
    try:
        return merged({}, reader.existing(), decode)
    finally:
        reader.close()


class FollowedTable(Generic[T]):
    """A compacted topic as a dict (key → decoded value, a null value deletes), kept current by a thread.

    ``changes`` counts the updates, so a reader can cache what it derives from ``rows``.
    """

    def __init__(self, settings: Settings, topic: str, decode: Callable[[bytes], T | None],
                 interval: float = 0.1) -> None:
        self.decode = decode
        self.reader = CompactedReader(settings, topic)
        self.rows: dict[str, T] = {}
        self.changes = 0
        self._take(self.reader.existing())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, args=(interval,), name=f"velox-{topic}", daemon=True)
        self._thread.start()

    def _take(self, messages: Iterable[Message]) -> None:
        self.rows = merged(self.rows, messages, self.decode)  # readers see the old table or the new, never half
        self.changes += 1

    def _follow(self, interval: float) -> None:
        while not self._stop.wait(interval):
            if messages := self.reader.new():
                self._take(messages)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.reader.close()
