"""A partition's user states on a new model version, built beside the live ones: the swap that never stalls.

A version's training set holds partition p's observations up to ``training_end[p]``
(exclusive). The states on the new version are therefore: each of the version's users starts
from their trained vector, counting their training observations; then every observation from
``training_end[p]`` on is applied online, in order. Each observation is counted exactly once,
and the result depends only on the version and the topic. Rollback is the same with an older
version.

A ``Shadow`` does that replay in memory, a slice at a time (``advance``), while the worker goes
on applying the live stream to the current states; the replay's end is the live position, which
moves. Once the shadow has reached it, every event the live states saw is in the shadow too, and
the worker switches the partition (``Worker._switch``): the shadow's records and the version
marker go to the changelog, then to the table in one write batch, so the edge sees the whole
partition on the old version or on the new one, never half; from then on the partition's events
are applied on the new version. Nothing is written before the switch: a crash during the build
leaves the old states and the old marker, and the worker builds the shadow again when it restarts.
"""

from __future__ import annotations

import time
from dataclasses import replace

from confluent_kafka import Consumer, Message, TopicPartition

from velox import kafka
from velox.model.learner import Event, Learner
from velox.schemas import observation, partitioning
from velox.schemas.user_state import UserState
from velox.settings import Settings

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
        self.settings, self.learner, self.partition = settings, learner, partition
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

    def advance(self, end: int, budget: float) -> bool:
        """Apply the observations below ``end`` for about ``budget`` seconds; whether all below ``end`` are in."""
        deadline = time.monotonic() + budget
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

    def close(self) -> None:
        self.reader.close()
