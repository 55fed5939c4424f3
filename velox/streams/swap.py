"""A partition's user states on a new model version, built beside the live ones: the swap that never stalls.

A version's training set holds partition p's observations up to ``training_end[p]``
(exclusive). The states on the new version are therefore: each of the version's users starts
from their trained vector, counting their training observations; then every observation from
``training_end[p]`` on is applied online, in order. Each observation is counted exactly once,
and the result depends only on the version and the topic. Rollback is the same with an older
version.

A ``Shadow`` does that replay in memory, a slice at a time (``advance``), while the worker goes
on applying the live stream to the current states; the replay's end is the live position, which
moves. Once the shadow has reached it, it keeps following it, and the worker writes its records
a chunk of users at a time (``take``). A record is written whole, with its version inside, so
the edge answers each user from one version, old or new, and always from some state. From its
write on, a user's live events are applied on the new version (the worker asks ``written``);
the others' still on the old one, and the shadow applies them too, so the state written later
is current. A record takes the seen items of the stored one, which has seen every event the
replay applies and those before the training end the worker has reached, so the replay keeps
none; a worker behind the training end gets the rest later, and the learner remembers the items
of those events, which the version has counted already.

``Swap`` runs it for a worker: when a version is activated, it is loaded and its users grouped
by home partition in a thread (vectorized: ``ModelVersion.user_homes``), the stream going on; then
each owned partition stays on its version (``live``) until its shadow is written; the shadows are
built one partition at a time, in slices of ``SWAP_SLICE`` seconds between live batches, and once
caught up written ``SWAP_CHUNK`` users at a time (their keys made a chunk at a time too): the
stream is never stopped for a swap.

The replay also counts the new version's item totals (``velox.streams.item_tallies``): it sees
exactly the partition's events from the version's training end. They are sent as a snapshot just
before the last chunk (its write flushes them first), and from then on the partition's live
events count on the new version.

The version marker is written with the last chunk. Until then a crash leaves the old marker, and
the worker builds the whole partition again when it restarts (a user written already is simply
written again); a worker recovering from the changelog does the same when the changelog's last
marker is not the new version.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import replace
from itertools import islice
from typing import NamedTuple

import numpy as np
from confluent_kafka import Consumer, Message, TopicPartition

from velox.control import versions
from velox.kafka import clients
from velox.model.learner import Event, Learner, event_of, make_rule
from velox.model.store import ModelStore
from velox.schemas import observation, user_state
from velox.schemas.feedback import Feedback
from velox.schemas.model_version import Activation
from velox.schemas.user_state import UserState
from velox.settings import Settings
from velox.state.partition_store import VERSION_KEY, PartitionStore
from velox.streams import worker_metrics
from velox.streams.changelog import Changelog
from velox.streams.item_tallies import Tallies, Tally

CHUNK = 250  # messages read and applied per step: a few milliseconds
SWAP_SLICE = 0.02  # seconds of a swap's work (replay, then writing) between two live batches
SWAP_CHUNK = 500  # a swap's records written at once: a few milliseconds, then the slice's deadline is checked

log = logging.getLogger("velox.worker")


class Prepared(NamedTuple):
    """A version made ready to swap to: its learner, and its users' home partitions (by row)."""

    activation: Activation | None  # None: the initial version
    learner: Learner
    training_end: Mapping[int, int]
    homes: np.ndarray
    seconds: float  # taken to prepare it


class Shadow:
    """One partition's states on ``learner.version``, replayed from ``start`` towards the live position."""

    def __init__(self, settings: Settings, learner: Learner, rows: np.ndarray, partition: int, start: int) -> None:
        self.settings, self.learner, self.partition = settings, replace(learner, keeps_seen=False), partition
        self.start = start
        # A trained user's state is made when the replay or the writing first needs it, and their
        # keys as they are written, a chunk at a time: a partition holds hundreds of thousands.
        self.rows = rows  # the version's users of the partition
        self.states: dict[bytes, UserState] = {}
        self.unknown: set[bytes] = set()  # users of the replay the version does not know
        self.written: set[bytes] = set()
        self.unwritten: set[bytes] | None = None  # from the first take on: unknown users still to write
        self.next_row = 0  # from the first take on: the trained users before it are written
        self.replayed = 0
        self.tally = Tally(learner.version, partition, start)  # the item totals on the new version, counted in the replay
        self.source = settings.topic("observations")
        self.reader: Consumer = clients.consumer(settings, group=f"{settings.app_id}-replay")
        self.reader.assign([TopicPartition(self.source, partition, start)])
        self.ahead: list[Message] = []  # read, but at or past the live position when read

    def advance(self, end: int, deadline: float) -> bool:
        """Apply the observations below ``end`` until ``deadline`` (monotonic); whether all below ``end`` are in."""
        while True:
            if self.ahead:  # in offset order
                due = [m for m in self.ahead if m.offset() < end]
                self.ahead = self.ahead[len(due):]
                self._apply(due)
                if self.ahead:  # the next message is at or past the end: everything below it is in
                    return True
            if self._read_to(end):
                return True
            if time.monotonic() >= deadline:
                return False
            read = [m for m in clients.arrived(self.reader, CHUNK, 0.005) if m.error() is None]
            due = [m for m in read if m.offset() < end]
            self.ahead = read[len(due):]
            self._apply(due)

    def _read_to(self, end: int) -> bool:
        """Whether the reader has passed every offset below ``end`` (markers included)."""
        if end <= self.start:
            return True
        offset = self.reader.position([TopicPartition(self.source, self.partition)])[0].offset
        return offset >= end

    def _apply(self, messages: list[Message]) -> None:
        feedback = Feedback(self.settings.implicit, self.settings.confidences)
        counted = [(m, seen) for m in messages if (seen := observation.counted(
                   m.key(), m.value(), self.partition, self.settings.partitions, feedback.target))]
        # (counted is None for a dead letter, or an event the worker moved to its home partition)
        if not counted:
            return
        events = [event_of(seen, m.offset(), feedback) for m, seen in counted]
        self.tally.count(events, {seen.item_code: str(seen.item) for _, seen in counted if seen.item_code < 0})
        version, unknown = self.learner.version, []
        for event in events:
            if event.key not in self.states:
                row = version.users.row(event.user)  # home here: one of the partition's rows if known
                if row >= 0:
                    self.states[event.key] = self._trained(row)
                elif event.key not in self.unknown:
                    unknown.append(event.key)
        new, _ = self.learner.observe_many(self.states, events)
        self.states.update(new)
        self.replayed += len(events)
        self.unknown.update(unknown)
        if self.unwritten is not None:  # a user new to the replay since writing began
            self.unwritten.update(key for key in unknown if key not in self.written)

    def _trained(self, row: int) -> UserState:
        version = self.learner.version
        return self.learner.start(int(version.user_ids[row]), row)._replace(offset=self.start - 1)

    def take(self, store: PartitionStore, most: int | None = None) -> list[tuple[bytes, bytes]]:
        """The records of up to ``most`` users not written yet (all if None), now counted as written:
        users the version does not know, then its own in row order; after the last, the version
        marker. Call once the shadow has caught up."""
        if self.unwritten is None:
            self.unwritten = set(self.unknown)
        keys = list(islice(self.unwritten, most))
        self.unwritten.difference_update(keys)
        states = [self.states[key] for key in keys]
        rows = self.rows[self.next_row:len(self.rows) if most is None else self.next_row + most - len(keys)]
        self.next_row += len(rows)
        for key, row in zip(self.learner.version.user_keys(rows).tolist(), rows.tolist()):
            keys.append(key)
            states.append(self.states.get(key) or self._trained(row))
        self.written.update(keys)
        records = [(key, user_state.encode(state, stored))
                   for key, state, stored in zip(keys, states, store.get_many(keys))]
        if self.done:
            records.append((VERSION_KEY, self.learner.version.id.encode()))
        return records

    @property
    def done(self) -> bool:
        """Whether every user's record and the version marker have been taken."""
        return self.unwritten is not None and not self.unwritten and self.next_row == len(self.rows)

    def close(self) -> None:
        self.reader.close()


class Swap:
    """The version a worker's partitions are on, and their move to each newly activated one."""

    def __init__(self, settings: Settings, stores: dict[int, PartitionStore], changelog: Changelog,
                 position: Callable[[int], int], tallies: Tallies) -> None:
        self.settings, self.stores, self.changelog, self.position = settings, stores, changelog, position
        self.tallies = tallies
        self.rule = make_rule(**settings.rule_params())
        self.follower = versions.Follower(settings)
        # During a swap: the partitions still on an older version, those still to build on the
        # new one (in turn: one shadow at a time), and the one being built.
        self.live: dict[int, Learner] = {}
        self.building: list[int] = []
        self.shadow: Shadow | None = None
        self.started = 0.0
        self.replayed = 0
        self.preparing: tuple[str, Future[Prepared]] | None = None  # a version being loaded, by id
        self._use(self._prepare(self.follower.latest()))

    def _prepare(self, activation: Activation | None) -> Prepared:
        """``activation``'s version (the initial one if None) loaded, with its users' partitions."""
        started = time.monotonic()
        if activation is None:
            version, training_end = versions.initial_version(self.settings), {}
        else:
            version = ModelStore(activation.store).load(activation.version.id)
            training_end = activation.version.training_end
        return Prepared(activation, Learner(version, self.rule, keep_known=self.settings.keep_known), training_end,
                        version.user_homes(self.settings.partitions), time.monotonic() - started)

    def _prepare_in_thread(self, activation: Activation) -> Future[Prepared]:
        """``_prepare`` beside the stream: loading a version of millions of users takes seconds."""
        future: Future[Prepared] = Future()

        def run() -> None:
            try:
                future.set_result(self._prepare(activation))
            except BaseException as exc:  # raised again in the worker's loop, by result()
                future.set_exception(exc)

        threading.Thread(target=run, name="velox-swap-prepare", daemon=True).start()
        return future

    def _use(self, prepared: Prepared) -> None:
        """Make the prepared version the one new states are built on."""
        self.learner, self.training_end, self.homes = prepared.learner, prepared.training_end, prepared.homes

    def learners(self, local: dict[int, list[Event]]) -> list[tuple[Learner, dict[int, list[Event]]]]:
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

    @property
    def swapping(self) -> bool:
        """Whether a version is being prepared or partitions built on it."""
        return self.preparing is not None or bool(self.building)

    def follow(self) -> None:
        """Prepare a newly activated version, start a swap to it once prepared, and advance the one in
        progress. A later activation replaces one still being prepared (back to the current version:
        none)."""
        activation = self.follower.poll()
        if activation is not None:
            wanted = activation.version.id
            if wanted == self.learner.version.id:
                self.preparing = None
            elif self.preparing is None or self.preparing[0] != wanted:
                self.preparing = wanted, self._prepare_in_thread(activation)
        if self.preparing is not None and self.preparing[1].done():
            prepared, self.preparing = self.preparing[1].result(), None
            self._start(prepared)
        if self.building:
            self._advance()

    def opened(self, partition: int) -> None:
        """An assigned partition's store, recovered: built on the current version at once if it is on another."""
        if self.stores[partition].version != self.learner.version.id:
            shadow = self._shadow(partition)
            self._complete(shadow)
            shadow.close()

    def _start(self, prepared: Prepared) -> None:
        """Start building every owned partition on the announced version, beside the live states;
        the live stream goes on meanwhile."""
        activation = prepared.activation
        assert activation is not None
        if self.shadow is not None and self.shadow.written:  # half written: finish it, one version per partition
            self._complete(self.shadow)
            self._switched()
        elif self.shadow is not None:  # a newer activation replaces the one in progress
            self.shadow.close()
            self.shadow = None
        for partition in self.stores:  # each partition stays on its version until its shadow is written
            self.live.setdefault(partition, self.learner)
        self._use(prepared)
        self.building = sorted(self.stores)
        self.started, self.replayed = time.monotonic(), 0
        log.info("swapping to version %s (%s): %d users loaded and placed in %.2f s; building partitions %s beside "
                 "the live states", activation.version.id, activation.reason or "no reason given",
                 len(prepared.homes), prepared.seconds, self.building)

    def _advance(self) -> None:
        """One slice of the swap: replay, and once caught up, write chunks of the shadow's records
        until the slice is over (no live events are applied in between: it stays caught up)."""
        if self.shadow is None:
            self.shadow = self._shadow(self.building[0])
        shadow = self.shadow
        deadline = time.monotonic() + SWAP_SLICE
        if not shadow.advance(self.position(shadow.partition), deadline):
            return
        while True:
            records = shadow.take(self.stores[shadow.partition], SWAP_CHUNK)
            if shadow.done:  # the new version's item totals go out before its marker
                self.tallies.switched(shadow.tally, self.position(shadow.partition))
            self._write(shadow.partition, records)
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
        self.replayed += shadow.replayed
        if not self.building:
            worker_metrics.SWAPS.inc()
            log.info(
                "swapped to version %s in %.2f s: partitions %s, %d observations re-applied after its training end",
                self.learner.version.id, time.monotonic() - self.started, sorted(self.stores), self.replayed,
            )

    def _complete(self, shadow: Shadow) -> None:
        """Replay up to the live position and write every record not written yet, at once."""
        while not shadow.advance(self.position(shadow.partition), time.monotonic() + 1.0):
            pass
        records = shadow.take(self.stores[shadow.partition])
        self.tallies.switched(shadow.tally, self.position(shadow.partition))  # before the marker
        self._write(shadow.partition, records)

    def _shadow(self, partition: int) -> Shadow:
        return Shadow(self.settings, self.learner, np.flatnonzero(self.homes == partition), partition,
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
        self.changelog.flush()
        store.apply_changelog(records, self.changelog.delivered.get(partition, store.changelog_offset))
        for key, record in records:
            self.changelog.record(key, record, partition)

    def close(self, partitions: list[int]) -> None:
        """Partitions no longer owned: out of the swap in progress."""
        for partition in partitions:
            if partition in self.building:
                self.building.remove(partition)
            if self.shadow is not None and self.shadow.partition == partition:
                self.shadow.close()
                self.shadow = None
            self.live.pop(partition, None)
