"""The top-k cache: repeated questions are answered from it, and never after the user changed.

The user's record is written by the test itself into a real RocksDB (as the worker would), the
edge reads it as a secondary; so the moment of the update is known exactly.
"""

from __future__ import annotations

import gc
import time
import uuid
from pathlib import Path

import numpy as np
from starlette.testclient import TestClient

from velox.control import owners, topics
from velox.control.versions import initial_version
from velox.kafka import clients
from velox.schemas import user_state
from velox.schemas.user_state import UserState
from velox.serving.edge import Edge
from velox.serving.server import create_app
from velox.settings import Settings
from velox.state.layout import table_path
from velox.state.partition_store import PartitionStore


def lookups(client: TestClient, route: str) -> dict[str, float]:
    found = {"hit": 0.0, "miss": 0.0}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("velox_edge_cache_lookups_total") and f'route="{route}"' in line:
            found["hit" if 'result="hit"' in line else "miss"] = float(line.split()[-1])
    return found


def test_a_repeated_question_is_a_hit_and_an_update_is_never_answered_from_the_cache(
    settings: Settings, tmp_path: Path
) -> None:
    own = settings.replace(data=tmp_path, namespace=f"c{uuid.uuid4().hex[:8]}-", partitions=1, d=5, items=50)
    topics.ensure(own)
    store = PartitionStore(table_path(own.data, 0))
    version = initial_version(own).id
    key = b"7"
    store.put(key, user_state.encode(UserState(version, np.ones(5, np.float32), count=1, offset=10)))
    owners.announce(own, clients.producer(own), [0])
    edge = Edge.open(own)
    try:
        with TestClient(create_app(edge)) as client:
            ask = {"user": 7, "item": 3}
            first = client.get("/v1/models/default/predict", params=ask).json()["score"]
            before = lookups(client, "top_k")
            top = client.get("/v1/models/default/top_k", params={"user": 7, "k": 3}).json()["items"]
            assert client.get("/v1/models/default/top_k", params={"user": 7, "k": 3}).json()["items"] == top
            after = lookups(client, "top_k")
            assert (after["miss"] - before["miss"], after["hit"] - before["hit"]) == (1, 1)
            # Cached answers are bytes, never walked by the garbage collector (cached lists of dicts
            # made each full collection a pause that grew with the cache: bench/serve.py's top-k p99).
            assert edge.top_k_cache.entries and not any(map(gc.is_tracked, edge.top_k_cache.entries.values()))
            store.put(key, user_state.encode(UserState(version, -np.ones(5, np.float32), count=2, offset=11)))
            time.sleep(2 * edge.state.freshness)  # the secondary catches up at the next read after this
            updated = edge.models.active.score(-np.ones(5, np.float32), 3)
            assert client.get("/v1/models/default/predict", params=ask).json()["score"] == updated != first
            assert client.get("/v1/models/default/top_k", params={"user": 7, "k": 3}).json()["items"] != top
    finally:
        edge.close()
        store.close()
