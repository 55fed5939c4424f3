"""Which version is active: the compacted ``model-versions`` topic, keyed by model name.

The last record for a model is the single source of truth for every process: a retrain job or
an admin announces, workers and edges follow.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import Message, Producer

from velox.control import compacted, pins
from velox.kafka import clients, topic_admin
from velox.model.store import ModelStore
from velox.model.version import ModelVersion, random_version
from velox.schemas import model_version
from velox.schemas.model_version import Activation
from velox.settings import Settings


def initial_version(settings: Settings) -> ModelVersion:
    """The version to serve until a trained one is active: a file, or a seeded random θ."""
    if settings.initial_version is not None:
        return ModelVersion.from_npz(settings.initial_version.read_bytes())
    return random_version(settings.items, settings.d, seed=settings.seed)


def topic(settings: Settings) -> str:
    return settings.topic("model-versions")


def ensure_topic(settings: Settings) -> None:
    topic_admin.create_topics(settings, {topic(settings): 1}, {"cleanup.policy": "compact"})


def announcer(settings: Settings) -> Producer:
    """A producer for activations, the topic ensured; a long-lived caller keeps one (a new one connects and checks the topic again)."""
    ensure_topic(settings)
    return clients.producer(settings)


def activate(settings: Settings, version_id: str, reason: str, producer: Producer | None = None,
             by_hand: bool = False) -> Activation:
    """Announce ``version_id`` (which must be complete in the store) as the active version,
    with the caller's ``announcer`` or a new one. ``by_hand``: an operator's choice, pinned first
    (``velox.control.pins``) so that no automatic retrain activates over it from then on."""
    info = ModelStore(settings.model_store).info(version_id)
    if by_hand:
        pins.pin(settings, version_id, reason)
    activation = Activation(settings.model, info, settings.model_store, time.time(), reason)
    producer = announcer(settings) if producer is None else producer  # (a Producer with nothing queued is falsy)
    producer.produce(topic(settings), key=settings.model.encode(), value=model_version.encode(activation))
    if producer.flush(30) != 0:
        raise TimeoutError(f"the activation of {version_id} was not acknowledged within 30 s")
    return activation


class Follower:
    """Reads ``model-versions`` for one model: the latest activation, then each new one."""

    def __init__(self, settings: Settings) -> None:
        ensure_topic(settings)
        self.key = settings.model.encode()
        self.reader = compacted.CompactedReader(settings, topic(settings))

    def latest(self) -> Activation | None:
        """The last activation announced before this follower started (None if none ever was)."""
        return self._last(self.reader.existing())

    def poll(self) -> Activation | None:
        """A newly announced activation, without waiting; None if nothing new."""
        return self._last(self.reader.new())

    def _last(self, messages: Iterable[Message]) -> Activation | None:
        found = None
        for message in messages:
            if message.key() == self.key:
                found = model_version.decode_activation(message.value())
        return found

    def close(self) -> None:
        self.reader.close()


def active(settings: Settings) -> Activation | None:
    """The latest activation of ``settings.model``, or None if it has never had one."""
    follower = Follower(settings)
    try:
        return follower.latest()
    finally:
        follower.close()
