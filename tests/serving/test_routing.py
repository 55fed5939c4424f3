"""Two workers, each with its own edge and data directory: every edge answers for every user.

A request for a user whose partition the other worker owns is forwarded to that worker's edge;
when the owner's edge is gone the answer is the model's default, marked and counted; when the
owner worker is gone its partitions move and the remaining worker answers from the recovered state.
"""

from __future__ import annotations

import math
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving.processes import EdgeProcess
from tests.streams.harness import WorkerProcess
from velox.control import topics
from velox.local.broker import free_bootstrap
from velox.schemas import partitioning
from velox.settings import Settings

PREDICT = "/v1/models/default/predict"


@pytest.fixture()
def pair(settings: Settings, tmp_path: Path) -> Iterator[tuple[list[WorkerProcess], list[EdgeProcess]]]:
    # Without item corrections: the answers compared here are given seconds apart, and the corrections
    # move as the log grows (tests/serving/test_corrections.py has an edge with them).
    shared = settings.replace(namespace=f"r{uuid.uuid4().hex[:8]}-", partitions=4, d=5, items=50, item_shrinkage=math.inf,
                              worker_metrics_port=0, slo_ms=2000)
    topics.ensure(shared)
    sides = [shared.replace(data=tmp_path / name, worker_id=f"worker-{name}",
                            edge_port=int(free_bootstrap().split(":")[1])) for name in ("a", "b")]
    workers, edges = [WorkerProcess(s) for s in sides], [EdgeProcess(s) for s in sides]
    try:
        for process in [*workers, *edges]:
            process.start()
        yield workers, edges
    finally:
        for process in [*edges, *workers]:
            process.stop()


def wait_split(edges: list[EdgeProcess]) -> list[list[int]]:
    """Each edge's local partitions, once both are ready and both workers own some."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        held = [edge.wait_ready()["partitions"] for edge in edges]
        if all(held):
            return held
        time.sleep(0.2)
    raise AssertionError(f"the workers never split the partitions: {held}")


def user_in(partitions: list[int], count: int) -> int:
    return next(u for u in range(1000) if partitioning.home(str(u).encode(), count) in partitions)


def test_requests_are_forwarded_to_the_owner_and_fall_back_to_the_default(pair) -> None:
    workers, (edge_a, edge_b) = pair
    _, held_b = wait_split([edge_a, edge_b])
    user = user_in(held_b, 4)
    for _ in range(5):
        assert edge_a.post("/v1/models/default/observe", {"user": user, "item": 3, "score": 5.0}) == 202

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status, body = edge_a.get(PREDICT, user=user, item=3)
        if body["known_user"]:
            break
        time.sleep(0.05)
    assert status == 200 and body["served_by"] == "worker-b" and body["default"] is False and body["known_user"]
    assert edge_b.get(PREDICT, user=user, item=3)[1]["score"] == body["score"]
    for exclude_seen, expected in (("false", [2, 3, 4]), ("true", [2, 4])):
        status, top = edge_a.get("/v1/models/default/top_k", user=user, k=3, candidates="2,3,4", exclude_seen=exclude_seen)
        assert top["served_by"] == "worker-b" and sorted(entry["item"] for entry in top["items"]) == expected
    learned = body["score"]

    edge_b.stop()  # the owner's edge is gone: the default answer, marked, with the reason, counted
    status, body = edge_a.get(PREDICT, user=user, item=3)
    assert status == 200 and body["default"] is True and "worker-b" in body["reason"]
    assert body["score"] != learned  # the version's batch answer, without the online updates
    metrics = urllib.request.urlopen(f"{edge_a.settings.edge_url}/metrics", timeout=10).read().decode()
    assert 'velox_edge_default_answers_total{cause="unreachable",route="predict"}' in metrics

    workers[1].stop()  # the owner is gone too: its partitions move to worker-a, which recovers them
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, body = edge_a.get(PREDICT, user=user, item=3)
        if body["served_by"] == "worker-a" and not body["default"]:
            break
        time.sleep(0.2)
    assert body["served_by"] == "worker-a" and body["known_user"] and body["score"] == pytest.approx(learned, abs=1e-6)
