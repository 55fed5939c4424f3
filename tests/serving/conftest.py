"""The edge over a real worker's state, shared by the serving tests (one per module)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.testclient import TestClient

from tests.streams.harness import WorkerProcess, produce, wait_until_committed
from velox.broker import free_bootstrap
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


@pytest.fixture(scope="module")
def edge_url(served: tuple[TestClient, Settings]) -> Iterator[str]:
    """The served edge on a real port, for clients that speak HTTP over TCP."""
    client, _ = served
    port = int(free_bootstrap().split(":")[1])
    server = uvicorn.Server(uvicorn.Config(client.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
