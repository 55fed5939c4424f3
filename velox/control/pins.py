"""Which version an operator pinned: the compacted ``model-pins`` topic, keyed by model name.

An activation by hand (``velox model activate``, the edge's activate call) pins the version it
activates, so a rollback holds: the retrain controller's automatic runs still train and save, but
activate nothing over a pin until ``velox model unpin`` lifts it or another activation by hand
moves it. A topic of its own, not a field of the activation: lifting a pin announces no new
activation for workers and edges to act on.
"""

from __future__ import annotations

import time

from velox.control import compacted
from velox.kafka import clients, topic_admin
from velox.schemas import model_version
from velox.schemas.model_version import Pin
from velox.settings import Settings


def topic(settings: Settings) -> str:
    return settings.topic("model-pins")


def ensure_topic(settings: Settings) -> None:
    topic_admin.create_topics(settings, {topic(settings): 1}, {"cleanup.policy": "compact"})


def current(settings: Settings) -> Pin | None:
    """The pin on ``settings.model``, None if there is none."""
    ensure_topic(settings)
    return compacted.read_table(settings, topic(settings), model_version.decode_pin).get(settings.model)


def pin(settings: Settings, version_id: str, by: str) -> Pin:
    found = Pin(settings.model, version_id, time.time(), by)
    _write(settings, model_version.encode(found))
    return found


def unpin(settings: Settings) -> None:
    _write(settings, None)


def _write(settings: Settings, value: bytes | None) -> None:
    ensure_topic(settings)
    producer = clients.producer(settings)
    producer.produce(topic(settings), key=settings.model.encode(), value=value)
    if producer.flush(30) != 0:
        raise TimeoutError(f"the pin of model {settings.model!r} was not acknowledged within 30 s")
