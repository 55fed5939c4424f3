"""Topics created with the replicas there are brokers for."""

from __future__ import annotations

import uuid

from confluent_kafka.admin import ConfigResource

from velox.kafka import clients, topic_admin
from velox.settings import Settings


def test_topics_get_the_replicas_there_are_brokers_for_and_a_matching_min_insync(settings: Settings) -> None:
    own = settings.replace(namespace=f"r{uuid.uuid4().hex[:8]}-")
    name = own.topic("replicated")
    topic_admin.create_topics(own, {name: 2})
    admin = clients.admin_client(own)
    meta = admin.list_topics(name, timeout=30).topics[name]
    assert {len(p.replicas) for p in meta.partitions.values()} == {1}  # one broker here: min(3, 1)
    [described] = admin.describe_configs([ConfigResource("topic", name)]).values()
    assert described.result()["min.insync.replicas"].value == "1"
