"""Retrain requests: the edge's admin call writes one, the controller (``velox retrain --watch``) runs a job.

A topic rather than a call into the batch job: the edge never imports ``batch/``, a request
made while no controller runs waits for the next one (its consumer group remembers what it
has handled), and the controller's one-job-at-a-time rule covers requests too.
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer

from velox.kafka import clients, topic_admin
from velox.schemas import retrain_request
from velox.schemas.retrain_request import RetrainRequest
from velox.settings import Settings


def topic(settings: Settings) -> str:
    return settings.topic("retrain-requests")


def ensure_topic(settings: Settings) -> None:
    topic_admin.create_topics(settings, {topic(settings): 1})


def send(settings: Settings, reason: str) -> str:
    """Log a request for ``settings.model``; return its id once the broker acknowledged it."""
    ensure_topic(settings)
    request = RetrainRequest(uuid.uuid4().hex[:12], settings.model, reason, time.time())
    producer = clients.producer(settings)
    producer.produce(topic(settings), key=settings.model.encode(), value=retrain_request.encode(request))
    if producer.flush(30) != 0:
        raise TimeoutError("the retrain request was not acknowledged within 30 s")
    return request.id


def reader(settings: Settings) -> Consumer:
    """The controller's consumer: the requests after the last one it handled (it commits after each run)."""
    ensure_topic(settings)
    consumer = clients.consumer(settings, group=f"{settings.app_id}-retrain-requests")
    consumer.subscribe([topic(settings)])
    return consumer


def pending(consumer: Consumer, settings: Settings) -> list[RetrainRequest]:
    """Requests for ``settings.model`` that arrived since the last call, without waiting."""
    found = []
    for message in consumer.consume(100, timeout=0):
        if message.error() is None:
            request = retrain_request.decode(message.value())
            if request.model == settings.model:
                found.append(request)
    return found
