"""Who is in a consumer group now: each member's static id and the partitions it holds.

A worker killed without a word keeps its claim on ``owners``; the group drops it once its
session times out, so the group's members are who really holds partitions.
"""

from __future__ import annotations

from confluent_kafka import KafkaException

from velox.kafka.clients import admin_client
from velox.settings import Settings


def members(settings: Settings, group: str, topic: str, timeout: float = 10) -> dict[str, list[int]] | None:
    """Each member (by its static id, else its client id) and its partitions of ``topic``; None if the
    group could not be described within ``timeout``."""
    admin = admin_client(settings)
    try:
        [described] = admin.describe_consumer_groups([group], request_timeout=timeout).values()
        found = described.result(timeout)
    except KafkaException:
        return None
    return {(member.group_instance_id or member.client_id): sorted(tp.partition for tp in member.assignment.topic_partitions
                                                                   if tp.topic == topic)
            for member in found.members}
