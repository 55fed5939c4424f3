"""Topics created and described: partition counts, replicas and the replicas a write needs.

Topics are created with ``VELOX_REPLICATION`` replicas, at most as many as there are brokers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic

from velox.kafka.clients import admin_client, metadata
from velox.kafka.retry import moving
from velox.settings import Settings


def partition_count(settings: Settings, topic: str) -> int:
    admin = admin_client(settings)
    return len(metadata(settings, admin, topic).topics[topic].partitions)



def min_insync(replicas: int) -> int:
    """The replicas a write needs by default: two from three replicas on (one lost broker is survived
    without losing an acknowledged write), else one."""
    return 2 if replicas >= 3 else 1



def create_topics(settings: Settings, topics: Mapping[str, int],
                  config: Mapping[str, str] | None = None) -> dict[str, int]:
    """Create each topic with its partition count and replicas; a topic that exists already is left
    as it is, with one warning if it has fewer replicas than configured. Returns each topic's
    partition count as the broker's metadata gives it once every topic is there (the caller checks
    an existing topic's if it matters: asked again, a broker other than the one that answered here
    may not know a topic just created yet)."""
    admin = admin_client(settings)
    brokers = len(metadata(settings, admin).brokers)
    replicas = min(settings.replication, brokers)
    insync = settings.min_insync or min_insync(replicas)
    wanted, deadline = dict(topics), time.monotonic() + 60
    existed: set[str] = set()
    while wanted:  # asked again while a broker's death moves the controller or a leader
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=count, replication_factor=replicas,
                      config={"min.insync.replicas": str(min(insync, replicas)), **(config or {})})
             for name, count in wanted.items()],
            operation_timeout=30,
        )
        for name, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    if not moving(exc.args[0]) or time.monotonic() > deadline:
                        raise
                    continue  # asked again
                existed.add(name)
            del wanted[name]
        if wanted:
            time.sleep(0.5)
    # Created is not yet served: wait until the broker's metadata has every partition.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = metadata(settings, admin, timeout=10).topics
        if all(name in found and found[name].error is None
               and (name in existed or len(found[name].partitions) == count) for name, count in topics.items()):
            _warn_underreplicated(settings, {name: found[name] for name in topics}, replicas)
            return {name: len(found[name].partitions) for name in topics}
        time.sleep(0.05)
    raise KafkaException(f"topics {sorted(topics)} did not appear in the broker's metadata within 30 s")


def _warn_underreplicated(settings: Settings, found: Mapping[str, Any], replicas: int) -> None:
    """One line for the topics that exist with fewer replicas than this cluster should give them."""
    short = {name: min(len(p.replicas) for p in meta.partitions.values()) for name, meta in found.items()}
    short = {name: count for name, count in short.items() if count < replicas}
    if short and (settings.bootstrap, tuple(sorted(short))) not in _WARNED:
        _WARNED.add((settings.bootstrap, tuple(sorted(short))))
        logging.getLogger("velox.kafka").warning(
            "%d topic(s) have fewer than %d replicas (VELOX_REPLICATION, at most the brokers there are): %s; "
            "losing a broker can lose their data (kafka-reassign-partitions adds replicas)", len(short), replicas,
            ", ".join(f"{name} ({count})" for name, count in sorted(short.items())))


_WARNED: set[tuple[str, tuple[str, ...]]] = set()


