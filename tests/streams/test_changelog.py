"""The worker's changelog producer: how far each partition's records are acknowledged."""

from __future__ import annotations

import uuid

from confluent_kafka import Message

from velox.control import topics
from velox.settings import Settings
from velox.streams.changelog import Changelog


def test_a_changelog_record_acknowledged_without_an_offset_keeps_the_last_known_mark(settings: Settings) -> None:
    """librdkafka reports a retry the broker had already written (DUPLICATE_SEQUENCE_NUMBER) as
    delivered with no offset: the worker keeps the last offset it knows instead of failing on it."""
    own = settings.replace(namespace=f"t{uuid.uuid4().hex[:8]}-")
    changelog = Changelog(own)
    topic = topics.changelog(own)
    changelog._on_delivery(None, Message(topic=topic, partition=1, offset=41))
    changelog._on_delivery(None, Message(topic=topic, partition=1))
    assert changelog.delivered == {1: 41} and not changelog.failures
