"""Errors that pass once the cluster has moved what a dead broker held, and asking again meanwhile."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException

T = TypeVar("T")


# What a client sees while a dead broker's partitions and group coordination move to another:
# librdkafka marks some of these retriable and not others (its answer to a watermark query).
MOVING = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR,
          KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError._WAIT_COORD,
          KafkaError.REQUEST_TIMED_OUT, KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._UNKNOWN_PARTITION,
          KafkaError.OFFSET_NOT_AVAILABLE, KafkaError.FENCED_LEADER_EPOCH, KafkaError.UNKNOWN_LEADER_EPOCH,
          KafkaError._DESTROY_BROKER,  # (a connection to the dead broker torn down under a request)
          KafkaError.UNKNOWN_TOPIC_OR_PART}  # (a topic just made, not yet known to every broker)


def moving(error: KafkaError) -> bool:
    """Whether ``error`` passes once the cluster has moved what a dead broker held."""
    return error.retriable() or error.code() in MOVING


def fenced(error: KafkaError) -> bool:
    """Whether a consumer that saw ``error`` is done for and a new one must take its place (a static
    member fenced after its group's coordinator moved, say)."""
    return error.fatal() or error.code() in (KafkaError._FATAL, KafkaError.FENCED_INSTANCE_ID)



def while_moving(ask: Callable[[float], T], timeout: float,
                 between: Callable[[KafkaError], None] = lambda error: None) -> T:
    """``ask(wait)`` until it answers, again after each error that passes once the cluster has moved
    what a dead broker held (``between`` sees the error first), for up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return ask(min(5.0, max(deadline - time.monotonic(), 1.0)))
        except KafkaException as exc:
            if not moving(exc.args[0]) or time.monotonic() >= deadline:
                raise
            between(exc.args[0])
            time.sleep(0.2)
