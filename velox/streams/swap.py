"""A partition's user states on a new model version, built beside the live ones: the swap that never stalls.

A version's training set holds partition p's observations up to ``training_end[p]``
(exclusive). The states on the new version are therefore: each of the version's users starts
from their trained vector, counting their training observations; then every observation from
``training_end[p]`` on is applied online, in order. Each observation is counted exactly once,
and the result depends only on the version and the topic. Rollback is the same with an older
version.

A ``Shadow`` does that replay in memory, a slice at a time (``advance``), while the worker goes
on applying the live stream to the current states; the replay's end is the live position, which
moves. Once the shadow has reached it, it keeps following it and encodes its records, a slice at
a time too (``prepare``: a record takes the seen items of the stored one, which has seen every
event the replay applies and those before the training end, so the replay keeps none); a user the
replay changes after that is encoded again at the end.
Then every event the live states saw is in the shadow too, and the worker switches the partition
(``Worker._switch``): the records and the version marker go to the table in one write batch, so
the edge sees the whole partition on the old version or on the new one, never half, and then to
the changelog in the same order; from then on the partition's events are applied on the new
version. Nothing is written before the switch: a crash during the build leaves the old states and
the old marker, and the worker builds the shadow again when it restarts.
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
ENCODE_CHUNK = 500  # records prepared per step: a few milliseconds


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
        self.started = time.monotonic()
        version = learner.version
        self.states: dict[bytes, UserState] = {}
        for row in rows:
            first = learner.rule.start(version.id, version.user_vectors[row])
            self.states[str(int(version.user_ids[row])).encode()] = replace(
                first, count=int(version.user_counts[row]), offset=start - 1)
        self.replayed = 0
        self.source = settings.topic("observations")
        self.reader: Consumer = kafka.consumer(settings, group=f"{settings.app_id}-replay")
        self.reader.assign([TopicPartition(self.source, partition, start)])
        self.start = start
        self.ahead: list[Message] = []  # read, but at or past the live position when read
        self.records: dict[bytes, bytes] = {}  # encoded by prepare
        self.unprepared: set[bytes] = set()  # changed by the replay since prepare began, or not yet encoded
        self.preparing = False

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
        if events:
            new, _ = self.learner.observe_many(self.states, events)
            self.states.update(new)
            self.replayed += len(events)
            if self.preparing:
                self.unprepared.update(new)

    def prepare(self, store: PartitionStore, deadline: float) -> bool:
        """Encode records until ``deadline`` (monotonic); whether every state's record is up to date.

        A record keeps the seen items of the stored one: they include the items rated before
        the training end, and the live states have seen every event the replay applies.
        """
        if not self.preparing:
            self.preparing, self.unprepared = True, set(self.states)
        while self.unprepared:
            if time.monotonic() >= deadline:
                return False
            keys = list(islice(self.unprepared, ENCODE_CHUNK))
            self.unprepared.difference_update(keys)
            for key, stored in zip(keys, store.get_many(keys)):
                self.records[key] = user_state.encode(self.states[key], stored)
        return True

    def switch_records(self, store: PartitionStore) -> list[tuple[bytes, bytes]]:
        """Every record of the new version's states, then its version marker: what the switch writes."""
        while not self.prepare(store, time.monotonic() + 1.0):
            pass
        return [*self.records.items(), (VERSION_KEY, self.learner.version.id.encode())]

    def close(self) -> None:
        self.reader.close()
