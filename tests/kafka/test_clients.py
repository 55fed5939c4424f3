"""The project's Kafka clients against the real broker."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from confluent_kafka import KafkaError

from velox.kafka import clients
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
    producer = clients.producer(settings)
    for event in sent:
        producer.produce(
            topic, key=event.key, value=observation.encode(event),
            on_delivery=lambda err, _msg: err and errors.append(err),
        )
        producer.poll(0)
    assert producer.flush(30) == 0
    assert errors == []

    consumer = clients.consumer(settings, group=f"{topic}-reader")
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
