"""The project's Kafka clients against the real broker."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from velox import kafka
from velox.schemas import observation, partitioning
from velox.schemas.observation import Observation
from velox.settings import Settings

EVENTS = 10_000
USERS = 97


def test_idempotent_producer_events_read_back_identical_and_in_order_per_key(
    settings: Settings, make_topic: Callable[..., str]
) -> None:
    topic = make_topic(partitions=4)
    sent = [
        Observation(user=i % USERS, item=i, score=float(i % 5) + 0.5, time=1_700_000_000.0 + i)
        for i in range(EVENTS)
    ]
    errors: list[KafkaError] = []
    producer = kafka.producer(settings)
    for event in sent:
        producer.produce(
            topic, key=event.key, value=observation.encode(event),
            on_delivery=lambda err, _msg: err and errors.append(err),
        )
        producer.poll(0)
    assert producer.flush(30) == 0
    assert errors == []

    consumer = kafka.consumer(settings, group=f"{topic}-reader")
    consumer.subscribe([topic])
    received: list[Observation] = []
    partitions_of_user: dict[int, set[int]] = defaultdict(set)
    try:
        for _ in range(200):
            for message in consumer.consume(1000, timeout=1.0):
                assert message.error() is None
                event = observation.decode(message.value())
                assert message.key() == event.key
                partitions_of_user[event.user].add(message.partition())
                received.append(event)
            if len(received) >= EVENTS:
                break
    finally:
        consumer.close()

    assert sorted(received, key=lambda e: e.item) == sent
    # One partition per user, and the one that partitioning.home computes (the edge routes by it).
    for user, partitions in partitions_of_user.items():
        assert partitions == {partitioning.home(str(user).encode(), 4)}
    for user in range(USERS):
        items = [event.item for event in received if event.user == user]
        assert items == sorted(items), f"user {user}'s events arrived out of order"


def test_murmur2_matches_the_java_clients_test_vectors() -> None:
    # From Kafka's own UtilsTest.testMurmur2.
    vectors = {
        b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829, b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    assert {key: partitioning.murmur2(key) for key in vectors} == vectors


def test_client_properties_are_read_the_java_way_and_named_the_java_way_for_spark(tmp_path: Path) -> None:
    from velox.kafka import java_options, properties

    path = tmp_path / "client.properties"
    path.write_text("# a comment\n! another\n\nsecurity.protocol=SASL_SSL\nsasl.mechanism: SCRAM-SHA-512\n"
                    "sasl.username velox\nsasl.password=p=s\"s:w\nssl.ca.location = /x/ca.pem\nclient.id\n")
    assert properties(path) == {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                                "sasl.username": "velox", "sasl.password": 'p=s"s:w', "ssl.ca.location": "/x/ca.pem",
                                "client.id": ""}
    assert java_options(Settings(kafka_config=path)) == {
        "security.protocol": "SASL_SSL", "client.id": "", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.jaas.config": 'org.apache.kafka.common.security.scram.ScramLoginModule required username="velox" '
                            'password="p=s\\"s:w";',
        "ssl.truststore.type": "PEM", "ssl.truststore.location": "/x/ca.pem",
    }


def test_a_missing_client_properties_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    from velox.errors import ConfigError
    from velox.kafka import properties

    with pytest.raises(ConfigError, match="VELOX_KAFKA_CONFIG .*nowhere.properties cannot be read"):
        properties(tmp_path / "nowhere.properties")


def test_topics_get_the_replicas_there_are_brokers_for_and_a_matching_min_insync(settings: Settings) -> None:
    from confluent_kafka.admin import ConfigResource

    from velox import kafka

    own = settings.replace(namespace=f"r{uuid.uuid4().hex[:8]}-")
    name = own.topic("replicated")
    kafka.create_topics(own, {name: 2})
    admin = kafka.admin_client(own)
    meta = admin.list_topics(name, timeout=30).topics[name]
    assert {len(p.replicas) for p in meta.partitions.values()} == {1}  # one broker here: min(3, 1)
    [described] = admin.describe_configs([ConfigResource("topic", name)]).values()
    assert described.result()["min.insync.replicas"].value == "1"


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
    assert [tp.offset for tp in kafka.committed(moving, [TopicPartition("t", 0)])] == [42]  # type: ignore[arg-type]
    assert moving.calls == 3
    refused = CoordinatorMoving(failures=1, code=KafkaError.GROUP_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaException):
        kafka.committed(refused, [TopicPartition("t", 0)])  # type: ignore[arg-type]
    assert refused.calls == 1
