"""Events that arrived outside their user's home partition, moved there exactly once.

Other people's producers use other partitioners (librdkafka's default is a CRC32 of the key,
Go's sarama FNV-1a; round-robin producers send no key), so an event may land anywhere. The
worker applies a user's events only in the user's home partition (``partitioning.home``): an
event found elsewhere is produced to its home partition, and the source offset that covers it
is committed in the same Kafka transaction (consume-transform-produce, as Kafka Streams does).
If the worker dies first, the transaction is aborted and the event is moved again, so the home
partition holds exactly one committed copy, and every reader that reads committed data sees
just that one. Moved in consumption order, a producer's events for a user keep their order.

Why a transaction rather than an origin-offset check in the user record: with a check, a crash
can leave two copies in the home partition, and every other reader (the retrain job, swap
replays, the edge's rewards) would need the same deduplication; with the transaction nobody does.
Its price is paid only while events are moved: read-committed consumers of a home partition
wait at an open transaction, so a transaction is committed within ``MOVE_INTERVAL``.
Correctly partitioned events never touch this producer.

An engine whose consumer is not librdkafka's (Faust's) cannot put its group's source offsets in
the transaction. Each move transaction then carries the moves' own progress instead: per source
partition, the offset below which every misplaced event has been moved, committed as the offsets
of the group ``<namespace>velox-moves`` that no consumer ever joins. Whoever reads a partition
again (after a crash, or as its next owner) moves only the misplaced events at or above it, so a
home partition still holds exactly one committed copy of each.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from confluent_kafka import Consumer, Producer, TopicPartition

from velox.kafka import clients, positions
from velox.settings import Settings
from velox.streams import worker_metrics
from velox.streams.arrival import Arrival

log = logging.getLogger("velox.worker")

MOVE_INTERVAL = 0.05  # seconds a move transaction stays open at most (while the worker is busy)
LOG_INTERVAL = 60.0
HEADER = "velox-moved-from"  # "<partition>:<offset>" of the original


class Mover:
    def __init__(self, settings: Settings, source: str) -> None:
        self.source = source
        # One transactional id per worker: a restarted worker aborts what its predecessor left open.
        self.producer: Producer = clients.producer(
            settings, **{"transactional.id": f"{settings.app_id}-mover-{settings.worker_id}",
                         "transaction.timeout.ms": 10_000}
        )
        self.producer.init_transactions(30)
        # Commits the moves' progress in the transaction; never joins its group.
        self.progress = clients.consumer(settings, group=f"{settings.app_id}-moves")
        # Per source partition, the offset below which every misplaced event has been moved, by a
        # committed transaction or the open one (a consumer may deliver an event again: Faust's
        # does after it seeks to the committed offsets once recovered).
        self.moved_below: dict[int, int] = {}
        self.sources: set[int] = set()  # the partitions the open transaction moved events from
        self.opened: float | None = None  # when the open transaction began
        self.unlogged: Counter[int] = Counter()  # moved per source partition since the last log line
        self.logged = time.monotonic() - LOG_INTERVAL

    @property
    def due(self) -> bool:
        """Whether the open transaction has been open long enough to commit."""
        return self.opened is not None and time.monotonic() - self.opened >= MOVE_INTERVAL

    def move(self, arrival: Arrival, key: bytes, home: int) -> None:
        """Produce ``arrival`` to partition ``home`` inside the open transaction (opening one),
        unless a committed transaction moved it already (it is read again after a crash)."""
        if arrival.offset < self._moved_below(arrival.partition):
            worker_metrics.MOVED_BEFORE.inc()
            return
        self.moved_below[arrival.partition] = arrival.offset + 1
        self.sources.add(arrival.partition)
        if self.opened is None:
            self.producer.begin_transaction()
            self.opened = time.monotonic()
        origin = f"{arrival.partition}:{arrival.offset}".encode()
        clients.send(self.producer, self.source, key=key, value=arrival.value, partition=home,
                   headers=[*(arrival.headers or []), (HEADER, origin)])
        worker_metrics.MOVED.labels(partition=str(arrival.partition)).inc()
        self.unlogged[arrival.partition] += 1
        self._log()

    def commit(self, consumer: Consumer, offsets: list[TopicPartition]) -> None:
        """Commit the moved events and the source ``offsets`` as one transaction."""
        assert self.opened is not None
        self.producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
        self._commit()

    def finish(self) -> None:
        """Commit the open transaction's moves with their progress: the way of an engine that
        commits its source offsets apart."""
        if self.opened is None:
            return
        progress = [TopicPartition(self.source, p, self.moved_below[p]) for p in sorted(self.sources)]
        self.producer.send_offsets_to_transaction(progress, self.progress.consumer_group_metadata(), 30)
        self._commit()

    def _commit(self) -> None:
        self.producer.commit_transaction(30)
        self.sources.clear()
        self.opened = None

    def abort(self) -> None:
        """Drop the open transaction's moves (their sources will be read and moved again)."""
        if self.opened is not None:
            self.producer.abort_transaction(30)
            self.forget(list(self.sources))  # read from the broker again: as the last commit left it
            self.sources.clear()
            self.opened = None

    def forget(self, partitions: list[int]) -> None:
        """Partitions this worker no longer reads: their progress is read again if they come back."""
        for partition in partitions:
            self.moved_below.pop(partition, None)

    def _moved_below(self, partition: int) -> int:
        if partition not in self.moved_below:
            tp = TopicPartition(self.source, partition)
            self.moved_below[partition] = positions.committed(self.progress, [tp])[0].offset
        return self.moved_below[partition]

    def _log(self) -> None:
        now = time.monotonic()
        if now - self.logged < LOG_INTERVAL:
            return
        self.logged = now
        moved = ", ".join(f"{count} from partition {p}" for p, count in sorted(self.unlogged.items()))
        log.warning(
            "moved events to their users' home partitions (%s): their producer does not partition by "
            "murmur2 of the key; produce with murmur2 (librdkafka clients: partitioner=murmur2_random) "
            "to spare them the hop", moved,
        )
        self.unlogged.clear()

    def close(self) -> None:
        self.abort()
        self.producer.flush(10)
        self.progress.close()
