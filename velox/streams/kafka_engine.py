"""``velox worker --engine kafka``: the engine on our own librdkafka loop (the shared part: ``velox.streams.engine``).

The consumer group ``<namespace>velox`` shares the partitions of ``observations`` among the
workers; partitions are by user, so one worker owns a user and applies their events in order.
For each assigned partition the worker opens its RocksDB and first catches up from the
user-state changelog topic (a worker on an empty disk recovers everything from it). Then
what each ``consume`` returns is one batch of ``Engine.apply``. It commits every
``COMMIT_INTERVAL`` seconds without stopping the stream (a checkpoint begun, then finished once
its changelog messages are acknowledged), and at once on revoke and on stop, in the steps of
``velox.streams.checkpoint``.

Throughput and the swap's stalls are measured by ``bench/stream.py`` and ``bench/swap.py``
(figures in bench/README.md).
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from velox import processes
from velox.control import owners
from velox.kafka import clients, retry
from velox.settings import Settings
from velox.state.layout import table_path
from velox.state.partition_store import PartitionStore
from velox.state.recovery import recover
from velox.streams import checkpoint, worker_metrics
from velox.streams.arrival import Arrival
from velox.streams.engine import BATCH, Engine
from velox.streams.startup import prepare

log = logging.getLogger("velox.worker")

COMMIT_INTERVAL = 1.0


class Worker(Engine):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.committed: dict[int, int] = {}
        self.checkpoint: checkpoint.Checkpoint | None = None  # begun, waiting for its acknowledgements
        self.stopping = False
        self.consumer = self._join()
        self.fenced = False  # the consumer hit a fatal error: a new one takes its place
        # Committed offsets and watermarks are asked of a consumer of the group that never joins it.
        # Asked of the group's own consumer inside on_assign, a watermark that met a dead broker's
        # partition asked for metadata (``positions.watermarks``), and confluent-kafka's list_topics
        # ends that consumer's call state: the next callback of the consume serving on_assign (a
        # log line, a commit's result) aborted the worker (CallState_get: cs != NULL; tests/test_cluster.py).
        self.queries = clients.consumer(settings, group=settings.app_id)

    def _join(self) -> Consumer:
        """The worker's consumer: a static member of the group (``VELOX_WORKER_ID``), subscribed."""
        # A fetch waits up to 10 ms for 100 kB: under a steady stream, one request brings many
        # events instead of each bringing a few, which saves the broker's and the worker's CPU
        # on shared cores and with it the produce-to-visible tail (bench/stream.py measures it).
        consumer = clients.consumer(
            self.settings, group=self.settings.app_id,
            **{"group.instance.id": self.settings.worker_id, "session.timeout.ms": 10_000,
               "fetch.wait.max.ms": 10, "fetch.min.bytes": 100_000, "queued.max.messages.kbytes": 16384,
               "on_commit": self._on_commit},
        )
        consumer.subscribe([self.source], on_assign=self._on_assign, on_revoke=self._on_revoke,
                           on_lost=self._on_lost)
        return consumer

    def _rejoin(self) -> None:
        """After a fatal consumer error, a new consumer with the same membership.

        Seen when a broker dies: the group's new coordinator fenced our static member as if another
        had taken its id. The states keep their source offsets, so whatever the new assignment
        replays changes nothing twice."""
        log.warning("consumer fenced: closing partitions %s and joining the group again", sorted(self.stores))
        self._close(list(self.stores))
        if self.mover.opened is not None:
            self.mover.abort()
        try:
            self.consumer.close()
        except KafkaException:
            pass
        self.consumer, self.fenced = self._join(), False

    def run(self) -> None:
        last_commit = last_metrics = time.monotonic()
        fetch, apply, commit, swap = (worker_metrics.STAGE_SECONDS.labels(stage=name)
                                      for name in ("fetch", "apply", "commit", "swap"))
        gc_pauses = worker_metrics.GcPauses()
        try:
            while not self.stopping:
                # Wait for one message, then take what has arrived with it: batches under load,
                # no waiting for a full batch when the stream is slow. An idle wait of 50 ms bounds
                # how late an activation is noticed when no events come.
                started = time.perf_counter()
                messages = clients.arrived(self.consumer, BATCH, 0 if self.swap.building else 0.05)
                fetched = time.perf_counter()
                fetch.observe(fetched - started)
                if messages:
                    self._apply(messages)
                    apply.observe(time.perf_counter() - fetched)
                if self.fenced:
                    self._rejoin()
                    continue
                self.producer.poll(0)
                if self.mover.due:  # home partitions wait at an open move transaction: keep it short
                    with commit.time():
                        self._commit()
                with swap.time():
                    self.swap.follow()
                now = time.monotonic()
                if self.checkpoint is None and now - last_commit >= COMMIT_INTERVAL:
                    with commit.time():
                        self._begin()
                    last_commit = now
                elif self.checkpoint is not None and self.changelog.acknowledged(self.checkpoint.mark):
                    with commit.time():
                        self._finish()
                if now - last_metrics >= self.settings.metrics_interval:
                    self._publish_metrics()
                    gc_pauses.flush()
                    last_metrics = now
            self._commit()
            self._publish_metrics()
            owners.announce(self.settings, self.producer, [])
        finally:
            gc_pauses.close()
            self.mover.close()
            self.consumer.close()
            self.queries.close()
            self.swap.follower.close()
            self.corrections.close()
            self.producer.flush(10)
            for store in self.stores.values():
                store.close()
            log.info("worker %s stopped", self.settings.worker_id)

    def stop(self, *_: object) -> None:
        self.stopping = True

    def _apply(self, messages: list[Message]) -> None:
        arrivals = []
        for message in messages:
            if message.error():
                log.warning("consume error: %s", message.error())
                self.fenced = self.fenced or retry.fenced(message.error())
                continue
            kind, timestamp = message.timestamp()
            arrivals.append(Arrival(message.partition(), message.offset(), message.key(), message.value(),
                                    timestamp if kind != 0 else None, message.headers()))  # 0: no timestamp
        self.apply(arrivals)

    def _commit(self) -> None:
        """The three steps at once (and any checkpoint begun is superseded: these offsets are newer)."""
        self.checkpoint = None
        if pending := self._pending():
            checkpoint.flush_changelog(self.changelog, self.stores, self.tallies)  # steps 1 and 2
            self._committed(pending, checkpoint.commit_offsets(self.consumer, self.mover, pending))  # step 3

    def _begin(self) -> None:
        """A periodic checkpoint: its step 1 now, the rest when ``_finish`` finds it acknowledged."""
        if self.mover.opened is not None:  # moved events commit in their transaction, now
            self._commit()
        elif pending := self._pending():
            self.checkpoint = checkpoint.begin(self.changelog, self.tallies, pending)

    def _finish(self) -> None:
        begun, self.checkpoint = self.checkpoint, None
        assert begun is not None
        if self.mover.opened is not None:  # events moved since it began: their transaction needs today's offsets
            self._commit()
            return
        checkpoint.remember(self.changelog, self.stores)
        self._committed(begun.offsets, checkpoint.commit_offsets(self.consumer, self.mover, begun.offsets,
                                                                  asynchronous=True))

    def _pending(self) -> list[TopicPartition]:
        """The owned partitions' positions not committed yet."""
        # The consumer's position can be past the last message: a transaction's commit marker
        # takes an offset too, and the group would never seem to reach the end without it.
        for tp in self.consumer.position([TopicPartition(self.source, p) for p in self.stores]):
            if tp.offset >= 0:
                self.positions[tp.partition] = tp.offset
        return [TopicPartition(self.source, p, o) for p, o in self.positions.items() if self.committed.get(p) != o]

    def _committed(self, offsets: list[TopicPartition], outcome: checkpoint.Outcome) -> None:
        if outcome is checkpoint.Outcome.FENCED:
            self.fenced = True  # the run loop joins again with a new consumer
        elif outcome is checkpoint.Outcome.REWIND:
            self._rewind()
        elif outcome is checkpoint.Outcome.COMMITTED:
            self.committed.update((tp.partition, tp.offset) for tp in offsets)

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """A commit's result (an asynchronous one's only word): offsets not taken are committed
        again at the next checkpoint; until then, events past them are replayed as no-ops after a crash."""
        failed = [tp for tp in partitions if error is not None or tp.error is not None]
        if not failed:
            return
        for tp in failed:
            if self.committed.get(tp.partition) == tp.offset:
                del self.committed[tp.partition]
        self.fenced = self.fenced or (error is not None and retry.fenced(error))
        log.warning("commit of partitions %s not taken (%s); tried again at the next checkpoint",
                    sorted(tp.partition for tp in failed), error or failed[0].error)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        started = time.monotonic()
        recovered = 0
        # One client asks the watermarks for every partition (``queries``): on a secured cluster a
        # new client per partition cost its TLS and SASL handshakes, seconds in all.
        for tp in partitions:
            store = PartitionStore(table_path(self.settings.data, tp.partition))
            recovered += recover(self.settings, self.queries, self.changelog.topic, tp.partition, store)
            self.opened(tp.partition, store)
        self.announce()
        log.info(
            "ready: partitions %s assigned, %d changelog records recovered in %.2f s",
            sorted(tp.partition for tp in partitions), recovered, time.monotonic() - started,
        )

    @property
    def reader(self) -> Consumer:
        return self.queries

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._commit()
        self._close([tp.partition for tp in partitions])
        self.announce()
        log.info("partitions %s revoked", sorted(tp.partition for tp in partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._close([tp.partition for tp in partitions])
        if self.mover.opened is not None:  # it may hold moves from the partitions kept, too
            self.mover.abort()
            self._rewind()
        self.announce()
        log.warning("partitions %s lost without a commit; the next owner replays them", sorted(
            tp.partition for tp in partitions))

    def _rewind(self) -> None:
        """Read every owned partition again from its committed offset (after moves were aborted).

        Applying an event twice changes nothing (the source offset in the record), so only the
        moves are redone.
        """
        self.checkpoint = None  # its offsets may be past moves now undone
        for partition in self.stores:
            self.positions.pop(partition, None)
            start = self.position(partition)
            self.consumer.seek(TopicPartition(self.source, partition, start))
            self.positions[partition] = start

    def _close(self, partitions: list[int]) -> None:
        super()._close(partitions)
        self.checkpoint = None  # (its offsets may be of partitions gone; the next one is taken afresh)
        for partition in partitions:
            self.committed.pop(partition, None)

    def _publish_metrics(self) -> None:
        worker_metrics.publish(
            self.settings, self.producer, self.errors, self.positions,
            lambda p: self.consumer.get_watermark_offsets(TopicPartition(self.source, p), cached=True)[1])


def run(settings: Settings) -> None:
    prepare(settings)
    worker = Worker(settings)
    processes.on_stop(worker.stop)
    if settings.worker_metrics_port:
        worker_metrics.serve(settings.worker_metrics_port)
    worker.log_start("kafka")
    worker.run()
