"""The edge over a real worker's state, shared by the serving tests (one per module)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tests.streams.harness import WorkerProcess, produce, wait_until_committed
from velox.schemas import observation
from velox.schemas.observation import Observation
from velox.serving.app import Edge, create_app
from velox.settings import Settings


@pytest.fixture(scope="module")
def served(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Settings]]:
    own = settings.replace(data=tmp_path_factory.mktemp("edge"), namespace=f"e{uuid.uuid4().hex[:8]}-",
                           partitions=2, d=5, items=50, worker_metrics_port=0, admin_token="s3cret")
    worker = WorkerProcess(own)
    worker.start()
    seen = [Observation(user=7, item=i, score=3.0, time=0) for i in range(5)]
    produce(own, own.topic("observations"), [(e.key, observation.encode(e)) for e in seen])
    wait_until_committed(own, own.topic("observations"), worker)
    edge = Edge.open(own)
    try:
        with TestClient(create_app(edge)) as client:
            yield client, own
    finally:
        try:
            edge.close()
        finally:  # the worker stops even if closing the edge fails
            worker.stop()
