"""On a planted split model, the worker's online updates recover each user's vector."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from tests.streams.harness import (
    WorkerProcess,
    produce,
    wait_until_committed,
    worker_states,
)
from velox.kafka import positions
from velox.model.batch_scores import predict_many
from velox.model.synthetic import items_only, observations, planted
from velox.model.version import ModelVersion
from velox.schemas import observation
from velox.settings import Settings


@pytest.mark.parametrize("rule", ["rls", "sgd"])
def test_online_updates_recover_planted_user_vectors(settings: Settings, tmp_path: Path, rule: str) -> None:
    truth = planted(users=150, items=80, d=6, seed=3)
    start_from = tmp_path / "items.npz"
    start_from.write_bytes(items_only(truth).to_npz())
    own = settings.replace(data=tmp_path, namespace=f"a{uuid.uuid4().hex[:8]}-", partitions=2, rule=rule,
                           l2=1.0 if rule == "rls" else 0.001, learning_rate=0.05, worker_metrics_port=0,
                           initial_version=start_from)
    worker = WorkerProcess(own)
    worker.start()
    try:
        events = [(e.key, observation.encode(e)) for e in observations(truth, 30_000, noise=0.1, seed=4)]
        produce(own, own.topic("observations"), events)
        wait_until_committed(own, own.topic("observations"), worker)
    finally:
        worker.stop()

    learned = worker_states(own)
    assert sum(state.count for state in learned.values()) == 30_000
    users = np.repeat(truth.user_ids, len(truth.item_ids))
    items = np.tile(truth.item_ids, len(truth.user_ids))
    exact = predict_many(truth, users, items)
    online = ModelVersion(
        id="learned", global_mean=truth.global_mean, item_ids=truth.item_ids, item_factors=truth.item_factors,
        item_bias=truth.item_bias, user_ids=np.array(sorted(learned)),
        user_vectors=np.array([learned[u].w for u in sorted(learned)]), user_counts=np.zeros(len(learned), np.int64),
    )
    cold = items_only(truth)  # every user as the mean user: what serving knew before any feedback
    online_rmse = float(np.sqrt(np.mean((predict_many(online, users, items) - exact) ** 2)))
    cold_rmse = float(np.sqrt(np.mean((predict_many(cold, users, items) - exact) ** 2)))
    assert cold_rmse > 0.5
    assert online_rmse < 0.1 * cold_rmse, (online_rmse, cold_rmse)


def test_load_synthetic_writes_the_planted_items_and_produces_the_events(settings: Settings, tmp_path: Path) -> None:
    own = settings.replace(data=tmp_path, namespace=f"s{uuid.uuid4().hex[:8]}-", partitions=2, d=4, items=30)
    result = subprocess.run(
        [sys.executable, "-m", "velox.cli", "load", "synthetic", str(tmp_path / "items.npz"),
         "--users", "20", "--events", "500"],
        env={**os.environ, **own.to_env()}, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    items = ModelVersion.from_npz((tmp_path / "items.npz").read_bytes())
    assert (items.d, len(items.item_ids), len(items.user_ids)) == (4, 30, 0)
    assert positions.lag(own, "nobody-reads-this", own.topic("observations")) == 500
