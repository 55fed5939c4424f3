"""Rebuilding a partition's user states on a model version: the no-loss swap.

A version's training set holds partition p's observations up to ``training_end[p]``
(exclusive). The states on the new version are therefore: each of the version's users starts
from their trained vector, counting their training observations; then every observation from
``training_end[p]`` up to the worker's position is applied online, in order. Each observation
is counted exactly once, and the result depends only on the version and the topic, so a swap
interrupted by a crash is simply done again. Rollback is the same with an older version.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from dataclasses import replace

from confluent_kafka import Message, TopicPartition

from velox import kafka
from velox.model.learner import Event, Learner
from velox.schemas import observation, partitioning
from velox.schemas.user_state import UserState
from velox.settings import Settings


def users_by_partition(learner: Learner, partitions: int) -> dict[int, list[int]]:
    """The version's users (as rows), grouped by the partition that owns each."""
    grouped: dict[int, list[int]] = {}
    for row, user in enumerate(learner.version.user_ids.tolist()):
        grouped.setdefault(partitioning.home(str(user).encode(), partitions), []).append(row)
    return grouped


def rebuild(
    settings: Settings, learner: Learner, rows: list[int], partition: int, start: int, end: int
) -> tuple[dict[bytes, UserState], int]:
    """States on ``learner.version`` after replaying the partition's offsets [start, end); and the replay count."""
    version = learner.version
    states: dict[bytes, UserState] = {}
    for row in rows:
        user = int(version.user_ids[row])
        start_state = learner.rule.start(version.id, version.user_vectors[row])
        states[str(user).encode()] = replace(start_state, count=int(version.user_counts[row]), offset=start - 1)
    replayed = 0
    messages = read_range(settings, settings.topic("observations"), partition, start, end)
    while chunk := list(islice(messages, 10_000)):
        events = [Event(seen.key, seen.user, seen.item, seen.score, message.offset()) for message in chunk
                  if (seen := observation.counted(message.key(), message.value(), partition, settings.partitions))]
        # (counted is None for a dead letter, or an event the worker moved to its home partition)
        new, _ = learner.observe_many(states, events)
        states.update(new)
        replayed += len(events)
    return states, replayed


def read_range(settings: Settings, topic: str, partition: int, start: int, end: int) -> Iterator[Message]:
    """Messages of one partition with offsets in [start, end), in order."""
    if start >= end:
        return
    reader = kafka.consumer(settings, group=f"{settings.app_id}-replay")
    tp = TopicPartition(topic, partition)
    try:
        reader.assign([TopicPartition(topic, partition, start)])
        while reader.position([tp])[0].offset < end:
            for message in kafka.arrived(reader, 10_000, 1.0):
                if message.error() is None and message.offset() < end:
                    yield message
    finally:
        reader.close()
