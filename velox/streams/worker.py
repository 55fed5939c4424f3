"""``velox worker``: observations in, each user's state updated in RocksDB, exactly once.

The consumer group ``<namespace>velox`` shares the partitions of ``observations`` among the
workers; partitions are by user, so one worker owns a user and applies their events in order.
For each assigned partition the worker opens its RocksDB and first catches up from the
``user-state`` changelog topic (a worker on an empty disk recovers everything from it). Then,
for what each ``consume`` returns:

1. decode and validate each event; a bad one goes to ``observations-dlq`` with the reason and
   source; one outside its user's home partition is moved there (``velox.streams.moves``) and
   applied when it comes back from there;
2. load the batch's users, one multi-get per partition; an event at or below its user's last
   applied source offset is skipped (a replay after a crash), and a user whose events were all
   skipped is written to the changelog again, since the local DB may have kept a write whose
   changelog message died with the process;
3. predict, record the prequential errors, apply the update rule: the events of every partition
   in one ``Learner.observe_many`` (vectorized across users, each user's events in order);
4. per partition, put the records, each with its last applied offset inside, in one write
   batch, and send each to the changelog.

A commit (every ``COMMIT_INTERVAL`` seconds, on revoke and on stop) has three steps:

1. flush the producer: every changelog record and dead letter so far is acknowledged;
2. remember in each partition's DB the last changelog offset it has written;
3. commit the source offsets (inside the move transaction, if events were moved since the last).

So a committed source offset never runs ahead of the changelog, and since every record carries
its source offset, replaying events after ``kill -9`` changes nothing.

A new model version is built beside the live states, one partition at a time, in slices between
live batches; once a partition's shadow has caught up, its records are written a chunk of users
at a time (``velox.streams.swap``): the stream is never stopped for a swap. Throughput and the swap's
stalls are measured by ``bench/stream.py`` and ``bench/swap.py`` (figures in bench/README.md).
"""

from __future__ import annotations

import gc
import logging
import time
from itertools import islice

import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from velox import kafka, processes
from velox.control import owners, topics, versions
from velox.errors import ChangelogFailed, ConfigError, InvalidObservation
from velox.model.learner import Event, Learner, UpdateRule, make_rule
from velox.model.prequential import PrequentialErrors
from velox.model.store import ModelStore
from velox.schemas import metrics as metrics_schema
from velox.schemas import observation, partitioning, user_state
from velox.schemas.dead_letter import DeadLetter
from velox.schemas.model_version import Activation
from velox.schemas.user_state import table_path
from velox.settings import Settings
from velox.streams import metrics
from velox.streams.moves import Mover
from velox.streams.store import PartitionStore
from velox.streams.swap import Shadow, users_by_partition

log = logging.getLogger("velox.worker")

COMMIT_INTERVAL = 1.0
BATCH = 2_000
SWAP_SLICE = 0.02  # seconds of a swap's replay between two live batches
SWAP_CHUNK = 2_000  # a swap's records written between two live batches: a few milliseconds


class Worker:
    def __init__(self, settings: Settings, rule: UpdateRule) -> None:
        self.settings = settings
        self.rule = rule
        self.follower = versions.Follower(settings)
        self._use(self.follower.latest())
        self.source = settings.topic("observations")
        self.changelog = topics.changelog(settings)
        self.dead_letters = settings.topic("observations-dlq")
        self.stores: dict[int, PartitionStore] = {}
        self.positions: dict[int, int] = {}  # next source offset to commit, per partition
        self.committed: dict[int, int] = {}
        self.delivered: dict[int, int] = {}  # last acknowledged changelog offset, per partition
        self.failures: list[KafkaError] = []
        self.errors = PrequentialErrors()
        # During a swap: the partitions still on an older version, those still to build on the
        # new one (in turn: one shadow at a time), and the one being built.
        self.live: dict[int, Learner] = {}
        self.building: list[int] = []
        self.shadow: Shadow | None = None
        self.swap_started = 0.0
        self.swap_replayed = 0
        self.stopping = False
        self.producer = kafka.producer(settings, on_delivery=self._on_delivery)
        self.mover = Mover(settings, self.source)
        self.consumer = self._join()
        self.fenced = False  # the consumer hit a fatal error: a new one takes its place

    def _join(self) -> Consumer:
        """The worker's consumer: a static member of the group (``VELOX_WORKER_ID``), subscribed."""
        # A fetch waits up to 10 ms for 100 kB: under a steady stream, one request brings many
        # events instead of each bringing a few, which halved the broker's and the worker's CPU
        # on two shared cores and with it the produce-to-visible tail (bench/stream.py).
        consumer = kafka.consumer(
            self.settings, group=self.settings.app_id,
            **{"group.instance.id": self.settings.worker_id, "session.timeout.ms": 10_000,
               "fetch.wait.max.ms": 10, "fetch.min.bytes": 100_000, "queued.max.messages.kbytes": 16384},
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

    def _use(self, activation: Activation | None) -> None:
        """Make ``activation``'s version (the initial one if None) the one new states are built on."""
        if activation is None:
            version, self.training_end = versions.initial_version(self.settings), {}
        else:
            version = ModelStore(activation.store).load(activation.version.id)
            self.training_end = activation.version.training_end
        self.learner = Learner(version, self.rule, keep_known=self.settings.keep_known)
        self.version_users = users_by_partition(self.learner, self.settings.partitions)

    def run(self) -> None:
        last_commit = last_metrics = time.monotonic()
        try:
            while not self.stopping:
                # Wait for one message, then take what has arrived with it: batches under load,
                # no waiting for a full batch when the stream is slow. An idle wait of 50 ms bounds
                # how late an activation is noticed when no events come.
                if messages := kafka.arrived(self.consumer, BATCH, 0 if self.building else 0.05):
                    self._apply(messages)
                if self.fenced:
                    self._rejoin()
                    continue
                self.producer.poll(0)
                if self.mover.due:  # home partitions wait at an open move transaction: keep it short
                    self._commit()
                activation = self.follower.poll()
                if activation is not None and activation.version.id != self.learner.version.id:
                    self._swap(activation)
                if self.building:
                    self._advance_swap()
                now = time.monotonic()
                if now - last_commit >= COMMIT_INTERVAL:
                    self._commit()
                    last_commit = now
                if now - last_metrics >= self.settings.metrics_interval:
                    self._publish_metrics()
                    last_metrics = now
            self._commit()
            self._publish_metrics()
            owners.announce(self.settings, self.producer, [])
        finally:
            self.mover.close()
            self.consumer.close()
            self.follower.close()
            self.producer.flush(10)
            for store in self.stores.values():
                store.close()
            log.info("worker %s stopped", self.settings.worker_id)

    def stop(self, *_: object) -> None:
        self.stopping = True

    def _apply(self, messages: list[Message]) -> None:
        """Apply what one ``consume`` returned: dead letters and moves first, then each partition's
        events as one batch of the learner (one multi-get, rounds of vectorized updates, one
        write batch, one changelog record per user)."""
        started = time.perf_counter()
        local: dict[int, list[Event]] = {}
        stamps: list[float] = []  # Kafka timestamps (ms) of the events applied here
        for message in messages:
            if message.error():
                log.warning("consume error: %s", message.error())
                self.fenced = self.fenced or kafka.fenced(message.error())
                continue
            partition, offset, key = message.partition(), message.offset(), message.key()
            self.positions[partition] = offset + 1
            try:
                seen = observation.from_message(key, message.value())
            except InvalidObservation as exc:
                letter = DeadLetter(str(exc), exc.field, self.source, partition, offset)
                self._send(self.dead_letters, key, message.value(), partition, letter.headers())
                metrics.DEAD_LETTERS.labels(field=exc.field or "event").inc()
                continue
            if key is None:
                key = seen.key
            home = partitioning.home(key, self.settings.partitions)
            if home != partition:
                self.mover.move(message, key, home)
                continue
            local.setdefault(partition, []).append(Event(key, seen.user, seen.item, seen.score, offset))
            kind, timestamp = message.timestamp()
            if kind != 0:  # TIMESTAMP_NOT_AVAILABLE
                stamps.append(timestamp)
        applied = sum(self._learn(learner, batch) for learner, batch in self._learners(local))
        if applied:
            metrics.APPLIED.inc(applied)
            metrics.UPDATE_SECONDS.observe((time.perf_counter() - started) / applied)
            metrics.VISIBLE_SECONDS.observe_many(np.maximum(time.time() - np.array(stamps) / 1000, 0.0))

    def _learners(self, local: dict[int, list[Event]]) -> list[tuple[Learner, dict[int, list[Event]]]]:
        """Each learner with the events it applies, by partition: the active version's, and during a
        swap the version a partition is still on (a user the swap has written is on the new one)."""
        groups: dict[int, tuple[Learner, dict[int, list[Event]]]] = {}

        def add(learner: Learner, partition: int, events: list[Event]) -> None:
            if events:
                groups.setdefault(id(learner), (learner, {}))[1][partition] = events

        shadow = self.shadow
        for partition, events in local.items():
            learner = self.live.get(partition, self.learner)
            if learner is self.learner or shadow is None or shadow.partition != partition or not shadow.written:
                add(learner, partition, events)
            else:
                add(self.learner, partition, [e for e in events if e.key in shadow.written])
                add(learner, partition, [e for e in events if e.key not in shadow.written])
        return list(groups.values())

    def _learn(self, learner: Learner, batch: dict[int, list[Event]]) -> int:
        """Apply one learner's events of a batch, all partitions in one ``observe_many`` (a key
        lives in one partition); return how many were new (not replays)."""
        keys = {partition: list(dict.fromkeys(event.key for event in events)) for partition, events in batch.items()}
        stored: dict[bytes, bytes | None] = {}
        for partition, part in keys.items():
            stored.update(zip(part, self.stores[partition].get_many(part)))
        states = {key: user_state.decode(value) for key, value in stored.items() if value is not None}
        events = [event for part in batch.values() for event in part]
        new, predictions = learner.observe_many(states, events)
        version, first, applied = learner.version, 0, 0
        for partition, part in batch.items():
            records = []
            for key in keys[partition]:
                if new[key] is states.get(key):  # every event of the user was applied already
                    self._send(self.changelog, key, stored[key], partition)  # the changelog may have lost it
                else:
                    records.append((key, user_state.encode(new[key])))
            self.stores[partition].put_many(records)
            for key, record in records:
                self._send(self.changelog, key, record, partition)
            written = sum(len(key) + len(record) for key, record in records)
            metrics.RECORD_BYTES.labels(to="table").inc(written)
            metrics.RECORD_BYTES.labels(to="changelog").inc(written)
            done = [(e, p) for e, p in zip(part, predictions[first:first + len(part)]) if p is not None]
            first += len(part)
            self.errors.record_many(version.id, partition, np.array([e.score - p for e, p in done]))
            applied += len(done)
        if unknown := sum(not version.knows_item(e.item) for e, p in zip(events, predictions) if p is not None):
            metrics.UNKNOWN_ITEMS.inc(unknown)
        if applied < len(events):
            metrics.DUPLICATES.inc(len(events) - applied)
        return applied

    def _send(self, topic: str, key: bytes | None, value: bytes | None, partition: int,
              headers: list[tuple[str, bytes]] | None = None) -> None:
        kafka.send(self.producer, topic, key=key, value=value, partition=partition, headers=headers)

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.failures.append(error)
        elif message.topic() == self.changelog:
            partition = message.partition()
            self.delivered[partition] = max(self.delivered.get(partition, -1), message.offset())

    def _commit(self) -> None:
        # The consumer's position can be past the last message: a transaction's commit marker
        # takes an offset too, and the group would never seem to reach the end without it.
        for tp in self.consumer.position([TopicPartition(self.source, p) for p in self.stores]):
            if tp.offset >= 0:
                self.positions[tp.partition] = tp.offset
        pending = {p: o for p, o in self.positions.items() if self.committed.get(p) != o}
        if not pending:
            return
        # Step 1. Every changelog record and dead letter sent so far is acknowledged.
        self._flush()
        # Step 2. Each partition's DB remembers how far the changelog reflects it.
        for partition, offset in self.delivered.items():
            if partition in self.stores:
                self.stores[partition].remember_changelog_offset(offset)
        # Step 3. Commit the source offsets, with the moved events if there are any.
        offsets = [TopicPartition(self.source, p, o) for p, o in pending.items()]
        if self.mover.opened is None:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                if kafka.fenced(exc.args[0]):
                    self.fenced = True  # the run loop joins again with a new consumer
                    return
                if not kafka.moving(exc.args[0]):
                    raise
                # The group's coordinator is moving (its broker died): the states hold their source
                # offsets, so a commit that comes later, or never, only means events replayed as no-ops.
                log.warning("commit not taken (%s); tried again at the next commit", exc.args[0].str())
                return
        else:
            try:
                self.mover.commit(self.consumer, offsets)
            except KafkaException as exc:
                if not exc.args[0].txn_requires_abort():
                    raise
                log.warning("move transaction failed (%s): aborted, its events are read and moved again", exc)
                self.mover.abort()
                self._rewind()
                return
        self.committed.update(pending)

    def _flush(self) -> None:
        """Wait until every changelog record and dead letter sent so far is acknowledged."""
        if self.producer.flush(30) != 0 or self.failures:
            raise ChangelogFailed(f"changelog or dead-letter writes failed: {self.failures[:3]}")

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        started = time.monotonic()
        recovered = 0
        for tp in partitions:
            store = self.stores[tp.partition] = PartitionStore(table_path(self.settings.data, tp.partition))
            recovered += recover(self.settings, self.changelog, tp.partition, store)
            if store.version != self.learner.version.id:
                self._rebuild(tp.partition)
        owners.announce(self.settings, self.producer, sorted(self.stores))
        log.info(
            "ready: partitions %s assigned, %d changelog records recovered in %.2f s",
            sorted(tp.partition for tp in partitions), recovered, time.monotonic() - started,
        )

    def _swap(self, activation: Activation) -> None:
        """Start building every owned partition on the announced version, beside the live states
        (see velox.streams.swap); the live stream goes on meanwhile."""
        if self.shadow is not None and self.shadow.written:  # half written: finish it, one version per partition
            self._complete(self.shadow)
            self._switched()
        elif self.shadow is not None:  # a newer activation replaces the one in progress
            self.shadow.close()
            self.shadow = None
        for partition in self.stores:  # each partition stays on its version until its shadow is written
            self.live.setdefault(partition, self.learner)
        self._use(activation)
        self.building = sorted(self.stores)
        self.swap_started, self.swap_replayed = time.monotonic(), 0
        log.info("swapping to version %s (%s): building partitions %s beside the live states",
                 activation.version.id, activation.reason or "no reason given", self.building)

    def _advance_swap(self) -> None:
        """One slice of the swap: replay, or once caught up, write a chunk of the shadow's records."""
        if self.shadow is None:
            self.shadow = self._shadow(self.building[0])
        shadow = self.shadow
        if not shadow.advance(self._position(shadow.partition), time.monotonic() + SWAP_SLICE):
            return
        self._write(shadow.partition, shadow.take(self.stores[shadow.partition], SWAP_CHUNK))
        if shadow.done:
            self._switched()

    def _switched(self) -> None:
        """The shadow's partition is on the new version; log the swap if it was the last."""
        assert self.shadow is not None
        shadow, self.shadow = self.shadow, None
        shadow.close()
        self.live.pop(shadow.partition, None)
        self.building.remove(shadow.partition)
        self.swap_replayed += shadow.replayed
        if not self.building:
            metrics.SWAPS.inc()
            log.info(
                "swapped to version %s in %.2f s: partitions %s, %d observations re-applied after its training end",
                self.learner.version.id, time.monotonic() - self.swap_started, sorted(self.stores), self.swap_replayed,
            )

    def _rebuild(self, partition: int) -> int:
        """Build one partition on the current version at once (an assigned partition on another); the replay count."""
        shadow = self._shadow(partition)
        self._complete(shadow)
        shadow.close()
        return shadow.replayed

    def _complete(self, shadow: Shadow) -> None:
        """Replay up to the live position and write every record not written yet, at once."""
        while not shadow.advance(self._position(shadow.partition), time.monotonic() + 1.0):
            pass
        self._write(shadow.partition, shadow.take(self.stores[shadow.partition]))

    def _shadow(self, partition: int) -> Shadow:
        return Shadow(self.settings, self.learner, self.version_users.get(partition, []), partition,
                      self.training_end.get(partition, 0))

    def _write(self, partition: int, records: list[tuple[bytes, bytes]]) -> None:
        """Write a swap's records to the table, then send them to the changelog.

        The write batch carries the changelog offset acknowledged so far: a restart's recovery
        then applies only changelog records sent after it, never a user's older-version record
        over the new one. The changelog gets the records in the same order, without waiting: its
        producer keeps order, so a changelog whose last marker is the new version holds all its
        records, and one that lacks the marker (a crash before it was sent) makes a worker
        recovering from it build the partition again.
        """
        store = self.stores[partition]
        self._flush()
        store.apply_changelog(records, self.delivered.get(partition, store.changelog_offset))
        for key, record in records:
            self._send(self.changelog, key, record, partition)

    def _position(self, partition: int) -> int:
        """The next source offset this worker will process in ``partition``."""
        if partition in self.positions:
            return self.positions[partition]
        tp = TopicPartition(self.source, partition)
        committed = self.consumer.committed([tp], timeout=30)[0].offset
        return committed if committed >= 0 else kafka.watermarks(self.consumer, tp)[0]

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._commit()
        self._close([tp.partition for tp in partitions])
        owners.announce(self.settings, self.producer, sorted(self.stores))
        log.info("partitions %s revoked", sorted(tp.partition for tp in partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._close([tp.partition for tp in partitions])
        if self.mover.opened is not None:  # it may hold moves from the partitions kept, too
            self.mover.abort()
            self._rewind()
        owners.announce(self.settings, self.producer, sorted(self.stores))
        log.warning("partitions %s lost without a commit; the next owner replays them", sorted(
            tp.partition for tp in partitions))

    def _rewind(self) -> None:
        """Read every owned partition again from its committed offset (after moves were aborted).

        Applying an event twice changes nothing (the source offset in the record), so only the
        moves are redone.
        """
        for partition in self.stores:
            self.positions.pop(partition, None)
            start = self._position(partition)
            self.consumer.seek(TopicPartition(self.source, partition, start))
            self.positions[partition] = start

    def _close(self, partitions: list[int]) -> None:
        for partition in partitions:
            if partition in self.building:
                self.building.remove(partition)
            if self.shadow is not None and self.shadow.partition == partition:
                self.shadow.close()
                self.shadow = None
            self.live.pop(partition, None)
            store = self.stores.pop(partition, None)
            if store is not None:
                store.close()
            self.positions.pop(partition, None)
            self.committed.pop(partition, None)
            self.delivered.pop(partition, None)

    def _publish_metrics(self) -> None:
        topic = self.settings.topic("model-metrics")
        for window in self.errors.drain():
            self.producer.produce(topic, key=window.version.encode(), value=metrics_schema.encode(window))
        for partition, position in self.positions.items():
            _, high = self.consumer.get_watermark_offsets(TopicPartition(self.source, partition), cached=True)
            if high >= 0:
                metrics.CONSUMER_LAG.labels(partition=str(partition)).set(max(high - position, 0))


def recover(settings: Settings, topic: str, partition: int, store: PartitionStore) -> int:
    """Apply the changelog after the store's remembered offset, up to its end now; return the count."""
    reader = kafka.consumer(settings, group=f"{settings.app_id}-recovery")
    try:
        low, high = kafka.watermarks(reader, TopicPartition(topic, partition))
    finally:
        reader.close()
    applied = 0
    messages = kafka.read_range(settings, topic, partition, max(store.changelog_offset + 1, low), high)
    while chunk := list(islice(messages, 10_000)):
        store.apply_changelog(((m.key(), m.value()) for m in chunk), chunk[-1].offset())
        applied += len(chunk)
    return applied


def run(settings: Settings) -> None:
    settings.data.mkdir(parents=True, exist_ok=True)
    topics.ensure(settings)
    partitions = kafka.partition_count(settings, settings.topic("observations"))
    if partitions != settings.partitions:
        raise ConfigError(
            f"topic {settings.topic('observations')} has {partitions} partitions but VELOX_PARTITIONS is "
            f"{settings.partitions}; the changelog and the edge's routing must agree with the topic"
        )
    worker = Worker(settings, make_rule(settings.rule, settings.learning_rate, settings.l2, settings.evidence))
    # Each event allocates short-lived objects and makes no cycles, while a swap holds a
    # partition's states in memory: with the default thresholds a full collection ran every
    # 0.3 s and took up to 60 ms (bench/swap.py), a stall of the stream each time.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    version = worker.learner.version
    processes.on_stop(worker.stop)
    if settings.worker_metrics_port:
        metrics.serve(settings.worker_metrics_port)
    log.info(
        "worker %s of group %s: version %s (d=%d, %d items), rule %s%s, %d partitions, metrics on :%s",
        settings.worker_id, settings.app_id, version.id, version.d, len(version.item_ids), worker.learner.rule,
        " (the version's users keep its vectors)" if settings.keep_known else "",
        settings.partitions, settings.worker_metrics_port or "off",
    )
    worker.run()
