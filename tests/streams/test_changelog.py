"""The worker's changelog producer: how far each partition's records are acknowledged."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import KafkaError, Message

from velox.control import topics
from velox.errors import ChangelogFailed
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


def test_a_checkpoint_waits_for_what_was_sent_before_its_mark(settings: Settings) -> None:
    """The kafka engine's checkpoint goes on applying events while its changelog records are in
    flight: it commits once every message sent before its mark is acknowledged, not before, and
    records sent after the mark do not hold it back."""
    own = settings.replace(namespace=f"t{uuid.uuid4().hex[:8]}-")
    topics.ensure(own)
    changelog = Changelog(own)
    for partition in (0, 1, 1):
        changelog.record(b"user", b"record", partition)
    mark = changelog.mark()
    assert not changelog.acknowledged(mark)  # no delivery report served yet
    changelog.flush()
    assert changelog.acknowledged(mark)
    changelog.record(b"user", b"record", 1)
    later = changelog.mark()
    assert changelog.acknowledged(mark) and not changelog.acknowledged(later)
    changelog.flush()
    assert changelog.acknowledged(later)


def test_a_mark_counts_each_partition_apart_and_a_failure_raises(settings: Settings) -> None:
    """Delivery reports come in order within a partition only: another partition's reports never
    stand in for one still in flight; a failed delivery raises (nothing is committed)."""
    own = settings.replace(namespace=f"t{uuid.uuid4().hex[:8]}-")
    changelog = Changelog(own)
    topic = topics.changelog(own)
    changelog.sent.update({(topic, 0): 1, (topic, 1): 1})
    mark = changelog.mark()
    changelog._on_delivery(None, Message(topic=topic, partition=1, offset=0))
    changelog._on_delivery(None, Message(topic=topic, partition=1, offset=1))
    assert not changelog.acknowledged(mark)
    changelog._on_delivery(None, Message(topic=topic, partition=0, offset=0))
    assert changelog.acknowledged(mark)
    changelog._on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), Message(topic=topic, partition=0))
    with pytest.raises(ChangelogFailed):
        changelog.acknowledged(mark)
