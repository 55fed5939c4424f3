"""A partition's table brought up to its changelog: what a worker does when it takes a partition.

Each DB remembers the offset of the last changelog message it reflects
(``PartitionStore.changelog_offset``); recovery applies the changelog after it, in write
batches, up to the changelog's end as it is when recovery starts. A worker on an empty disk
reads the whole changelog.
"""

from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition

from velox.kafka import clients, positions
from velox.settings import Settings
from velox.state.partition_store import PartitionStore


def recover(settings: Settings, reader: Consumer, topic: str, partition: int, store: PartitionStore) -> int:
    """Apply the changelog after the store's remembered offset, up to its end now (asked of
    ``reader``); return the count."""
    low, high = positions.watermarks(reader, TopicPartition(topic, partition))
    applied = 0
    for batch in clients.read_range(settings, topic, partition, max(store.changelog_offset + 1, low), high):
        store.apply_changelog(((m.key(), m.value()) for m in batch), batch[-1].offset())
        applied += len(batch)
    return applied
