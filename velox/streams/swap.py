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

The version marker is written with the last chunk. Until then a crash leaves the old marker, and
the worker builds the whole partition again when it restarts (a user written already is simply
written again); a worker recovering from the changelog does the same when the changelog's last
marker is not the new version.
"""

from __future__ import annotations

import time
from dataclasses import replace
from itertools import islice

from confluent_kafka import Consumer, Message, TopicPartition

from velox import kafka
from velox.model.learner import Event, Learner
from velox.schemas import observation, partitioning, user_state
from velox.schemas.user_state import UserState
from velox.settings import Settings
from velox.streams.store import VERSION_KEY, PartitionStore

CHUNK = 250  # messages read and applied per step: a few milliseconds


def users_by_partition(learner: Learner, partitions: int) -> dict[int, list[int]]:
    """The version's users (as rows), grouped by the partition that owns each."""
    grouped: dict[int, list[int]] = {}
    for row, user in enumerate(learner.version.user_ids.tolist()):
        grouped.setdefault(partitioning.home(str(user).encode(), partitions), []).append(row)
    return grouped


class Shadow:
    """One partition's states on ``learner.version``, replayed from ``start`` towards the live position."""

    def __init__(self, settings: Settings, learner: Learner, rows: list[int], partition: int, start: int) -> None:
        self.settings, self.learner, self.partition = settings, replace(learner, keeps_seen=False), partition
        self.start = start
        version = learner.version
        # A trained user's state is made when the replay or the writing first needs it.
        self.trained = {str(user).encode(): row for row, user in zip(rows, version.user_ids[rows].tolist())}
        self.states: dict[bytes, UserState] = {}
        self.written: set[bytes] = set()
        self.unwritten: set[bytes] | None = None  # from the first take on: the users still to write
        self.replayed = 0
        self.source = settings.topic("observations")
        self.reader: Consumer = kafka.consumer(settings, group=f"{settings.app_id}-replay")
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
            read = [m for m in kafka.arrived(self.reader, CHUNK, 0.005) if m.error() is None]
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
        events = [Event(seen.key, seen.user, seen.item, seen.score, m.offset()) for m in messages
                  if (seen := observation.counted(m.key(), m.value(), self.partition, self.settings.partitions))]
        # (counted is None for a dead letter, or an event the worker moved to its home partition)
        if not events:
            return
        for key in {event.key for event in events}:
            if key not in self.states and key in self.trained:
                self.states[key] = self._trained(key)
        new, _ = self.learner.observe_many(self.states, events)
        self.states.update(new)
        self.replayed += len(events)
        if self.unwritten is not None:  # a user new to the replay since writing began
            self.unwritten.update(key for key in new if key not in self.written)

    def _trained(self, key: bytes) -> UserState:
        version, row = self.learner.version, self.trained[key]
        first = self.learner.rule.start(version.id, version.user_vectors[row], int(version.user_counts[row]))
        return first._replace(offset=self.start - 1)

    def take(self, store: PartitionStore, most: int | None = None) -> list[tuple[bytes, bytes]]:
        """The records of up to ``most`` users not written yet (all if None), now counted as written;
        after the last, the version marker. Call once the shadow has caught up."""
        if self.unwritten is None:
            self.unwritten = set(self.trained) | set(self.states)
        keys = list(islice(self.unwritten, most))
        self.unwritten.difference_update(keys)
        self.written.update(keys)
        records = [(key, user_state.encode(self.states.get(key) or self._trained(key), stored))
                   for key, stored in zip(keys, store.get_many(keys))]
        if self.done:
            records.append((VERSION_KEY, self.learner.version.id.encode()))
        return records

    @property
    def done(self) -> bool:
        """Whether every user's record and the version marker have been taken."""
        return self.unwritten is not None and not self.unwritten

    def close(self) -> None:
        self.reader.close()
