"""One Kafka broker per test session (`make test`: one per core), and uniquely named topics per test.

With ``VELOX_BOOTSTRAP`` set, the tests use that broker; otherwise they start a local one on a
free port with its data under pytest's temporary directory, and stop it at the end.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from tests.streams.harness import forget_producers
from velox.kafka.topic_admin import create_topics
from velox.local.broker import throwaway_broker
from velox.settings import Settings

# Tests never assert timings: a loaded machine (a broker and Spark on two cores) must not fail them.
hypothesis_settings.register_profile("velox", deadline=None, suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.load_profile("velox")


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    env = Settings.from_env()
    # One edge process unless a test asks for more (tests/serving/test_edge_processes.py): the
    # default, one per core, would start twice the edges on this machine's two cores.
    env = env.replace(edge_processes=env.edge_processes or 1)
    data = tmp_path_factory.mktemp("velox-data")
    if "VELOX_BOOTSTRAP" in os.environ:
        yield env.replace(data=data)
        return
    with throwaway_broker(env.replace(data=data)) as settings:
        yield settings
        forget_producers()


@pytest.fixture
def make_topic(settings: Settings, request: pytest.FixtureRequest) -> Callable[..., str]:
    """Create a topic named after the test plus a random suffix; returns its name."""

    def make(partitions: int = 1, **config: str) -> str:
        stem = re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[:120]
        name = f"{stem}-{uuid.uuid4().hex[:8]}"
        create_topics(settings, {name: partitions}, config)
        return name

    return make
