"""What every stream engine shares: the learning, the records, the dead letters and the swap.

An engine (``velox.streams.worker``: our own librdkafka loop; ``velox.streams.faust_app``: a
Faust agent and table) decides how observations are consumed, where each partition's RocksDB
is opened, how the group's offsets are committed and how state is recovered. Everything else is
here, once: for what the engine hands over as one batch (``Engine.apply``),

1. decode and validate each event; a bad one goes to ``observations-dlq`` with the reason and
   source; one outside its user's home partition is moved there (``velox.streams.moves``) and applied
   when it comes back from there;
2. load the batch's users, one multi-get per partition; an event at or below its user's last
   applied source offset is skipped (a replay after a crash), and a user whose events were all
   skipped is written to the changelog again, since the local DB may have kept a write whose
   changelog message died with the process;
3. predict, record the prequential errors, apply the update rule: the events of every partition
   in one ``Learner.observe_many`` (vectorized across users, each user's events in order);
4. per partition, put the records, each with its last applied offset inside, in one write
   batch, and send each to the changelog through one librdkafka producer.

Before an engine commits source offsets it calls ``Engine.sync``: every changelog record and
dead letter sent so far is acknowledged, and each partition's DB remembers how far the
changelog reflects it. So a committed source offset never runs ahead of the changelog, and
since every record carries its source offset, replaying events after ``kill -9`` changes nothing.

A new model version is built beside the live states, one partition at a time, in slices between
live batches; once a partition's shadow has caught up, its records are written a chunk of users
at a time (``velox.streams.swap``): the stream is never stopped for a swap.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from velox import kafka
from velox.control import owners, topics, versions
from velox.errors import ChangelogFailed, InvalidObservation
from velox.model.learner import Event, Learner
from velox.model.prequential import PrequentialErrors
from velox.model.store import ModelStore
from velox.schemas import metrics as metrics_schema
from velox.schemas import observation, partitioning, user_state
from velox.schemas.dead_letter import DeadLetter
from velox.schemas.model_version import Activation
from velox.settings import Settings
from velox.streams import metrics
from velox.streams.moves import Mover
from velox.streams.store import PartitionStore
from velox.streams.swap import Shadow, users_by_partition

log = logging.getLogger("velox.worker")

SWAP_SLICE = 0.02  # seconds of a swap's work (replay, then writing) between two live batches
SWAP_CHUNK = 500  # a swap's records written at once: a few milliseconds, then the slice's deadline is checked


class Arrival(NamedTuple):
    """One consumed message, as any engine's client gives it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None  # milliseconds since the epoch, if the message has one
    headers: list[tuple[str, bytes]] | None


class Engine:
    """The shared part of a worker; an engine supplies ``reader`` and the stores, and commits."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rule = settings.update_rule()
        self.follower = versions.Follower(settings)
        self._use(self.follower.latest())
        self.source = settings.topic("observations")
        self.changelog = topics.changelog(settings)
        self.dead_letters = settings.topic("observations-dlq")
        self.stores: dict[int, PartitionStore] = {}
        self.positions: dict[int, int] = {}  # next source offset to commit, per partition
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
        self.producer = kafka.producer(settings, on_delivery=self._on_delivery)
        self.mover = Mover(settings, self.source)

    def log_start(self, engine: str) -> None:
        version = self.learner.version
        log.info(
            "worker %s of group %s on the %s engine: version %s (d=%d, %d items), rule %s%s, %d partitions, "
            "metrics on :%s", self.settings.worker_id, self.settings.app_id, engine, version.id, version.d,
            len(version.item_ids), self.learner.rule,
            " (the version's users keep its vectors)" if self.settings.keep_known else "",
            self.settings.partitions, self.settings.worker_metrics_port or "off",
        )

    @property
    def reader(self) -> Consumer:
        """A consumer of the engine's group that reads its committed offsets."""
        raise NotImplementedError

    def position(self, partition: int) -> int:
        """The next source offset this worker will process in ``partition``."""
        if partition in self.positions:
            return self.positions[partition]
        tp = TopicPartition(self.source, partition)
        committed = kafka.committed(self.reader, [tp])[0].offset
        return committed if committed >= 0 else kafka.watermarks(self.reader, tp)[0]

    def _use(self, activation: Activation | None) -> None:
        """Make ``activation``'s version (the initial one if None) the one new states are built on."""
        if activation is None:
            version, self.training_end = versions.initial_version(self.settings), {}
        else:
            version = ModelStore(activation.store).load(activation.version.id)
            self.training_end = activation.version.training_end
        self.learner = Learner(version, self.rule, keep_known=self.settings.keep_known)
        self.version_users = users_by_partition(self.learner, self.settings.partitions)

    def apply(self, arrivals: list[Arrival]) -> None:
        """Apply what the engine consumed together: dead letters and moves first, then the events
        as one batch of the learner (per partition one multi-get and one write batch; rounds of
        vectorized updates; one changelog record per user)."""
        started = time.perf_counter()
        local: dict[int, list[Event]] = {}
        stamps: list[float] = []  # Kafka timestamps (ms) of the events applied here
        for arrival in arrivals:
            partition, offset, key, value, timestamp, _ = arrival
            if offset >= self.positions.get(partition, 0):  # (not an event delivered again)
                self.positions[partition] = offset + 1
            try:
                seen = observation.from_message(key, value)
            except InvalidObservation as exc:
                letter = DeadLetter(str(exc), exc.field, self.source, partition, offset)
                self._send(self.dead_letters, key, value, partition, letter.headers())
                metrics.DEAD_LETTERS.labels(field=exc.field or "event").inc()
                continue
            if key is None:
                key = seen.key
            home = partitioning.home(key, self.settings.partitions)
            if home != partition:
                self.mover.move(arrival, key, home)
                continue
            local.setdefault(partition, []).append(Event(key, seen.user, seen.item, seen.score, offset))
            if timestamp is not None:
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
        elif message.topic() == self.changelog and message.offset() is not None:
            # No offset: a retry the broker had already written (DUPLICATE_SEQUENCE_NUMBER). The mark
            # stays lower, so a recovery reads a few records more, never fewer.
            partition = message.partition()
            self.delivered[partition] = max(self.delivered.get(partition, -1), message.offset())

    def _flush(self) -> None:
        """Wait until every changelog record and dead letter sent so far is acknowledged."""
        if self.producer.flush(30) != 0 or self.failures:
            raise ChangelogFailed(f"changelog or dead-letter writes failed: {self.failures[:3]}")

    def sync(self) -> None:
        """Before a commit of source offsets: every changelog record and dead letter sent so far
        is acknowledged, and each partition's DB remembers how far the changelog reflects it."""
        self._flush()
        for partition, offset in self.delivered.items():
            if partition in self.stores:
                self.stores[partition].remember_changelog_offset(offset)

    def follow(self) -> None:
        """Start a swap when a new version was activated, and advance the one in progress."""
        activation = self.follower.poll()
        if activation is not None and activation.version.id != self.learner.version.id:
            self._swap(activation)
        if self.building:
            self._advance_swap()

    def opened(self, partition: int, store: PartitionStore) -> None:
        """Take an assigned partition's store, recovered, and build it on the current version if it is on another."""
        self.stores[partition] = store
        if store.version != self.learner.version.id:
            self._rebuild(partition)

    def announce(self) -> None:
        """Tell the edges which partitions this worker answers for."""
        owners.announce(self.settings, self.producer, sorted(self.stores))

    def publish_metrics(self, highwater: Callable[[int], int | None]) -> None:
        """Send the prequential error windows closed since the last call to ``model-metrics``, and
        set each partition's lag from its high watermark (as the engine's consumer knows it)."""
        topic = self.settings.topic("model-metrics")
        for window in self.errors.drain():
            self.producer.produce(topic, key=window.version.encode(), value=metrics_schema.encode(window))
        for partition, position in self.positions.items():
            high = highwater(partition)
            if high is not None and high >= 0:
                metrics.CONSUMER_LAG.labels(partition=str(partition)).set(max(high - position, 0))

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
        """One slice of the swap: replay, and once caught up, write chunks of the shadow's records
        until the slice is over (no live events are applied in between: it stays caught up)."""
        if self.shadow is None:
            self.shadow = self._shadow(self.building[0])
        shadow = self.shadow
        deadline = time.monotonic() + SWAP_SLICE
        if not shadow.advance(self.position(shadow.partition), deadline):
            return
        while True:
            self._write(shadow.partition, shadow.take(self.stores[shadow.partition], SWAP_CHUNK))
            if shadow.done:
                self._switched()
                return
            if time.monotonic() >= deadline:
                return

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
        while not shadow.advance(self.position(shadow.partition), time.monotonic() + 1.0):
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
            self.delivered.pop(partition, None)
        self.mover.forget(partitions)


def prepare(settings: Settings) -> None:
    """What a worker of either engine checks and sets before it starts."""
    settings.data.mkdir(parents=True, exist_ok=True)
    topics.ensure(settings)  # and that the topic has VELOX_PARTITIONS partitions
    # Each event allocates short-lived objects and makes no cycles, while a swap holds a
    # partition's states in memory: with the default thresholds, full collections walked
    # them again and again during a swap, each a stall of the stream (bench/swap.py).
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def recover(settings: Settings, reader: Consumer, topic: str, partition: int, store: PartitionStore) -> int:
    """Apply the changelog after the store's remembered offset, up to its end now (asked of
    ``reader``); return the count."""
    low, high = kafka.watermarks(reader, TopicPartition(topic, partition))
    applied = 0
    for batch in kafka.read_range(settings, topic, partition, max(store.changelog_offset + 1, low), high):
        store.apply_changelog(((m.key(), m.value()) for m in batch), batch[-1].offset())
        applied += len(batch)
    return applied
