"""The retrain controller's state for operators: the compacted ``retrain-controller`` topic, keyed by model.

``velox retrain --watch`` says every few seconds (and at each run) its triggers, the drift trigger's
state and how its last run ended; ``velox status`` reads the last word. A topic, because the
controller has no address anyone could ask.
"""

from __future__ import annotations

from confluent_kafka import Producer

from velox.control import compacted
from velox.kafka import topic_admin
from velox.schemas import controller_report
from velox.schemas.controller_report import ControllerReport
from velox.settings import Settings


def topic(settings: Settings) -> str:
    return settings.topic("retrain-controller")


def ensure_topic(settings: Settings) -> None:
    topic_admin.create_topics(settings, {topic(settings): 1}, {"cleanup.policy": "compact"})


def say(settings: Settings, producer: Producer, report: ControllerReport) -> None:
    """Send the report (delivered in the background: the next one says it again)."""
    producer.produce(topic(settings), key=report.model.encode(), value=controller_report.encode(report))
    producer.poll(0)


def read(settings: Settings) -> dict[str, ControllerReport]:
    """Each model's last report (the topic must exist)."""
    return compacted.read_table(settings, topic(settings), controller_report.decode)
