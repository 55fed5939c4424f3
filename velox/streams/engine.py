"""Applying a batch of consumed observations to a worker's partitions: what both engines share.

An engine (``velox.streams.kafka_engine``: our own librdkafka loop; ``velox.streams.faust_engine``:
a Faust agent and table) decides how observations are consumed, where each partition's RocksDB
is opened, and how the group's offsets are committed (``velox.streams.checkpoint``). For what
it hands over as one batch, ``Engine.apply``:

1. decodes and validates each event (for what the system learns from: ``velox.schemas.feedback``);
   a bad one goes to ``observations-dlq`` with the reason and
   source; one outside its user's home partition is moved there (``velox.streams.moves``) and
   applied when it comes back from there;
2. loads the batch's users, one multi-get per partition; an event at or below its user's last
   applied source offset is skipped (a replay after a crash), and a user whose events were all
   skipped is written to the changelog again, since the local DB may have kept a write whose
   changelog message died with the process;
3. counts each partition's events in its item totals (``velox.streams.item_tallies``), predicts,
   records the prequential errors of the model as served (the prediction plus the cluster's item
   correction, ``velox.control.item_corrections``: what the retrain controller's drift trigger
   judges), applies the update rule: the events of every partition in one
   ``Learner.observe_many`` (vectorized across users, each user's events in order), on the
   version each partition is on (``velox.streams.swap``);
4. per partition, puts the records, each with its last applied offset inside, in one write
   batch, and sends each to the changelog (``velox.streams.changelog``).
"""

from __future__ import annotations

import logging
import time

import numpy as np
from confluent_kafka import Consumer, TopicPartition

from velox.control import owners
from velox.control.item_corrections import ItemCorrectionsFollower
from velox.errors import InvalidObservation
from velox.kafka import positions
from velox.model.learner import Event, Learner, event_of
from velox.model.prequential import PrequentialErrors
from velox.schemas import observation, partitioning, user_state
from velox.schemas.dead_letter import DeadLetter
from velox.schemas.feedback import Feedback
from velox.settings import Settings
from velox.state.partition_store import PartitionStore
from velox.streams import worker_metrics
from velox.streams.arrival import Arrival
from velox.streams.changelog import Changelog
from velox.streams.item_tallies import Tallies
from velox.streams.moves import Mover
from velox.streams.swap import Swap

log = logging.getLogger("velox.worker")

BATCH = 2_000  # events an engine takes from its consumer and applies as one batch, at most


class Engine:
    """A worker's partitions and the batches applied to them; an engine supplies ``reader``, opens
    the stores and commits."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.source = settings.topic("observations")
        self.stores: dict[int, PartitionStore] = {}
        self.positions: dict[int, int] = {}  # next source offset to commit, per partition
        self.errors = PrequentialErrors()
        self.changelog = Changelog(settings)
        self.producer = self.changelog.producer  # also announces owners and publishes the error windows
        self.tallies = Tallies(settings, self.changelog)
        self.corrections = ItemCorrectionsFollower(settings)  # the cluster's, to judge the model as served
        self.swap = Swap(settings, self.stores, self.changelog, self.position, self.tallies)
        self.mover = Mover(settings, self.source)
        self.feedback = Feedback(settings.implicit, settings.confidences)

    def log_start(self, engine: str) -> None:
        version = self.swap.learner.version
        log.info(
            "worker %s of group %s on the %s engine: version %s (d=%d, %d items), rule %s%s, %d partitions, "
            "metrics on :%s", self.settings.worker_id, self.settings.app_id, engine, version.id, version.d,
            len(version.item_ids), self.swap.learner.rule,
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
        committed = positions.committed(self.reader, [tp])[0].offset
        return committed if committed >= 0 else positions.watermarks(self.reader, tp)[0]

    def apply(self, arrivals: list[Arrival]) -> None:
        """Apply what the engine consumed together: dead letters and moves first, then the events
        as one batch of the learner (per partition one multi-get and one write batch; rounds of
        vectorized updates; one changelog record per user)."""
        started = time.perf_counter()
        local: dict[int, list[Event]] = {}
        names: dict[int, str] = {}  # the string ids of hashed item codes, for the item totals
        stamps: list[float] = []  # Kafka timestamps (ms) of the events applied here
        for arrival in arrivals:
            partition, offset, key, value, timestamp, _ = arrival
            if offset >= self.positions.get(partition, 0):  # (not an event delivered again)
                self.positions[partition] = offset + 1
            try:
                seen = observation.from_message(key, value)
                event = event_of(seen, offset, self.feedback)
            except InvalidObservation as exc:
                letter = DeadLetter(str(exc), exc.field, self.source, partition, offset)
                self.changelog.dead_letter(key, value, partition, letter.headers())
                worker_metrics.DEAD_LETTERS.labels(field=exc.field or "event").inc()
                continue
            key = event.key
            home = partitioning.home(key, self.settings.partitions)
            if home != partition:
                self.mover.move(arrival, key, home)
                continue
            local.setdefault(partition, []).append(event)
            if event.item < 0:
                names[event.item] = str(seen.item)
            if timestamp is not None:
                stamps.append(timestamp)
        self.tallies.count(local, names)
        applied = sum(self._learn(learner, batch) for learner, batch in self.swap.learners(local))
        if applied:
            worker_metrics.APPLIED.inc(applied)
            worker_metrics.UPDATE_SECONDS.observe((time.perf_counter() - started) / applied)
            worker_metrics.VISIBLE_SECONDS.observe_many(np.maximum(time.time() - np.array(stamps) / 1000, 0.0))

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
                    self.changelog.record(key, stored[key], partition)  # the changelog may have lost it
                else:
                    records.append((key, user_state.encode(new[key])))
            self.stores[partition].put_many(records)
            for key, record in records:
                self.changelog.record(key, record, partition)
            written = sum(len(key) + len(record) for key, record in records)
            worker_metrics.RECORD_BYTES.labels(to="table").inc(written)
            worker_metrics.RECORD_BYTES.labels(to="changelog").inc(written)
            done = [(e, p) for e, p in zip(part, predictions[first:first + len(part)]) if p is not None]
            first += len(part)
            served = self.corrections.values(version.id, np.fromiter((e.item for e, _ in done), np.int64, len(done)))
            self.errors.record_many(version.id, partition, np.array([e.score - p for e, p in done]) - served)
            applied += len(done)
        if unknown := sum(not version.knows_item(e.item) for e, p in zip(events, predictions) if p is not None):
            worker_metrics.UNKNOWN_ITEMS.inc(unknown)
        if applied < len(events):
            worker_metrics.DUPLICATES.inc(len(events) - applied)
        return applied

    def opened(self, partition: int, store: PartitionStore) -> None:
        """Take an assigned partition's store, recovered, and build it on the current version if it is on another."""
        self.stores[partition] = store
        self.swap.opened(partition)  # (a partition built on the current version here has its totals already)
        if partition not in self.tallies.parts:
            self.tallies.restore(self.swap.learner.version, partition, self.swap.training_end.get(partition, 0),
                                 self.position(partition))

    def announce(self) -> None:
        """Tell the edges which partitions this worker answers for."""
        owners.announce(self.settings, self.producer, sorted(self.stores))

    def _close(self, partitions: list[int]) -> None:
        self.swap.close(partitions)
        for partition in partitions:
            store = self.stores.pop(partition, None)
            if store is not None:
                store.close()
            self.positions.pop(partition, None)
        self.changelog.forget(partitions)
        self.tallies.forget(partitions)
        self.mover.forget(partitions)
