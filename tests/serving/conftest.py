"""The edge over a real worker's state, shared by the serving tests (one per module)."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.testclient import TestClient

from tests.streams.harness import WorkerProcess, produce, wait_until_committed
from velox.local.broker import free_bootstrap
from velox.model.synthetic import planted
from velox.model.version import ModelVersion
from velox.schemas import observation
from velox.schemas.observation import Observation
from velox.serving.edge import Edge
from velox.serving.server import create_app
from velox.settings import Settings


@pytest.fixture(scope="module")
def served(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Settings]]:
    """Without item corrections: these tests compare answers given seconds apart, which the corrections
    move as the log grows (tests/serving/test_corrections.py has an edge with them)."""
    with edge_beside_worker(settings.replace(data=tmp_path_factory.mktemp("edge"), item_shrinkage=math.inf)) as edge:
        yield edge


@contextmanager
def edge_beside_worker(settings: Settings) -> Iterator[tuple[TestClient, Settings]]:
    """An edge (admin token ``s3cret``) beside a worker on the random initial version (2 partitions,
    50 items, d = 5), user 7 having rated items 0-4."""
    own = settings.replace(namespace=f"e{uuid.uuid4().hex[:8]}-", partitions=2, d=5, items=50, worker_metrics_port=0,
                           admin_token="s3cret")
    worker = WorkerProcess(own)
    worker.start()
    seen = [Observation(user=7, item=i, score=3.0, time=0) for i in range(5)]
    produce(own, own.topic("observations"), [(e.key, observation.encode(e)) for e in seen])
    wait_until_committed(own, own.topic("observations"), worker)
    with client_beside(own, worker) as client:
        yield client, own


@contextmanager
def client_beside(own: Settings, worker: WorkerProcess) -> Iterator[TestClient]:
    """A test client of an edge opened on ``own`` beside the started ``worker``; the edge closed,
    then the worker stopped (even if closing the edge fails)."""
    edge = Edge.open(own)
    try:
        with TestClient(create_app(edge)) as client:
            yield client
    finally:
        try:
            edge.close()
        finally:
            worker.stop()


@contextmanager
def over_http(app: Starlette) -> Iterator[str]:
    """``app`` served on a real port (its own event loop, in a thread), for clients that speak HTTP over TCP."""
    port = int(free_bootstrap().split(":")[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def edge_url(served: tuple[TestClient, Settings]) -> Iterator[str]:
    """The served edge on a real port, for clients that speak HTTP over TCP."""
    with over_http(served[0].app) as url:
        yield url


@contextmanager
def planted_edge(settings: Settings, tmp_path_factory: pytest.TempPathFactory,
                 name: str) -> Iterator[tuple[TestClient, Settings, ModelVersion]]:
    """An edge (admin token ``s3cret``) over a worker whose version is a planted split model, which
    predicts its own ratings up to the noise; ready once the worker owns its partitions."""
    data = tmp_path_factory.mktemp(name)
    truth = planted(users=40, items=30, d=4, seed=5)
    (data / "truth.npz").write_bytes(truth.to_npz())
    own = settings.replace(data=data, namespace=f"{name[0]}{uuid.uuid4().hex[:8]}-", partitions=2,
                           worker_metrics_port=0, admin_token="s3cret", initial_version=data / "truth.npz")
    worker = WorkerProcess(own)
    worker.start()
    served = Edge.open(own)
    try:
        with TestClient(create_app(served)) as client:
            deadline = time.monotonic() + 60
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "the worker never announced its partitions"
                time.sleep(0.1)
            yield client, own, truth
    finally:
        try:
            served.close()
        finally:  # the worker stops even if closing the edge fails
            worker.stop()
