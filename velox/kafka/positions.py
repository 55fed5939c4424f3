"""Where a partition ends and where a group is: watermarks, committed offsets, lag; each asked
again while a dead broker's partitions and coordination move to another."""

from __future__ import annotations

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from velox.kafka.clients import consumer
from velox.kafka.retry import while_moving
from velox.kafka.topic_admin import partition_count
from velox.settings import Settings


def watermarks(reader: Consumer, tp: TopicPartition, timeout: float = 60) -> tuple[int, int]:
    """``get_watermark_offsets``, asked again while the partition's leader is moving (a broker died)."""

    def refresh(error: KafkaError) -> None:
        if error.code() == KafkaError._UNKNOWN_PARTITION:  # its metadata predates the partition
            try:
                reader.list_topics(tp.topic, timeout=5)
            except KafkaException:
                pass

    return while_moving(lambda wait: reader.get_watermark_offsets(tp, timeout=wait), timeout, refresh)


def committed(reader: Consumer, partitions: list[TopicPartition], timeout: float = 60) -> list[TopicPartition]:
    """The group's committed offsets, asked again while its coordinator moves (NOT_COORDINATOR and
    the like: a broker died, or a new group's coordinator is loading). A worker asks inside its
    rebalance callbacks, where an error would end the worker."""
    return while_moving(lambda wait: reader.committed(partitions, timeout=wait), timeout)


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """Each partition's end offset (the offset the next message will get)."""
    reader = consumer(settings, group=f"{settings.app_id}-watermarks")
    try:
        count = partition_count(settings, topic)
        return {p: watermarks(reader, TopicPartition(topic, p))[1] for p in range(count)}
    finally:
        reader.close()


def group_positions(settings: Settings, group: str, topic: str) -> dict[int, tuple[int, int]]:
    """Each partition's (committed offset of ``group``, end offset); a partition never committed counts from 0."""
    reader = consumer(settings, group=group)
    try:
        partitions = [TopicPartition(topic, p) for p in range(partition_count(settings, topic))]
        ends = [watermarks(reader, tp)[1] for tp in partitions]
        return {tp.partition: (max(tp.offset, 0), end) for tp, end in zip(committed(reader, partitions), ends)}
    finally:
        reader.close()


def lag(settings: Settings, group: str, topic: str) -> int:
    """Messages of ``topic`` that ``group`` has not committed yet (an empty partition counts 0)."""
    return sum(end - done for done, end in group_positions(settings, group, topic).values())


def offset_at(reader: Consumer, topic: str, partition: int, when: float, timeout: float = 30) -> int:
    """The first offset of a message written at ``when`` (seconds since the epoch) or later; the end
    offset if none was."""
    asked = TopicPartition(topic, partition, int(when * 1000))
    found = while_moving(lambda wait: reader.offsets_for_times([asked], timeout=wait), timeout)[0].offset
    return found if found >= 0 else watermarks(reader, TopicPartition(topic, partition), timeout)[1]
