"""Committed offsets and watermarks, asked again while a dead broker's coordination moves."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from velox.kafka import positions


class CoordinatorMoving:
    """A group reader whose coordinator is moving: ``committed`` fails ``failures`` times first."""

    def __init__(self, failures: int, code: int = KafkaError.NOT_COORDINATOR) -> None:
        self.failures, self.code, self.calls = failures, code, 0

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.calls += 1
        if self.calls <= self.failures:
            raise KafkaException(KafkaError(self.code, "Failed to get committed offsets"))
        return [TopicPartition(tp.topic, tp.partition, 42) for tp in partitions]


def test_committed_offsets_are_asked_again_while_the_coordinator_moves_and_other_errors_raise() -> None:
    """A worker asks inside its rebalance callbacks, just after a broker died: NOT_COORDINATOR there
    ended the worker (tests/test_cluster.py's failure test, once)."""
    moving = CoordinatorMoving(failures=2)
    assert [tp.offset for tp in positions.committed(moving, [TopicPartition("t", 0)])] == [42]  # type: ignore[arg-type]
    assert moving.calls == 3
    refused = CoordinatorMoving(failures=1, code=KafkaError.GROUP_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaException):
        positions.committed(refused, [TopicPartition("t", 0)])  # type: ignore[arg-type]
    assert refused.calls == 1
