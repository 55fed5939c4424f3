"""The worker's prequential error judges the model as served (with the item corrections): the drift
trigger fires on what users get, not on the version as trained."""

from __future__ import annotations

import time
import uuid

import numpy as np
from confluent_kafka import TopicPartition

from tests.streams.harness import WorkerProcess, produce, wait_until_committed
from velox.batch.controller import Observed, Triggers, should_retrain
from velox.control import topics
from velox.control.item_corrections import ItemCorrectionsFollower
from velox.kafka import clients, positions
from velox.model.batch_scores import predict_many
from velox.model.synthetic import planted
from velox.schemas import error_window, observation
from velox.schemas.error_window import ErrorWindow
from velox.schemas.observation import Observation
from velox.settings import Settings

NOW = 10_000.0


def ratings(version, rng: np.random.Generator, shift: np.ndarray, n: int) -> list[tuple[bytes, bytes]]:
    users, items = rng.integers(0, len(version.user_ids), n), rng.integers(0, len(shift), n)
    scores = predict_many(version, users, items) + shift[items] + rng.normal(0, 0.1, n)
    return [(seen.key, observation.encode(seen)) for seen in
            (Observation(user=int(u), item=int(i), score=float(s), time=0) for u, i, s in zip(users, items, scores))]


def drift(rmse: float, validation_rmse: float) -> str | None:
    """The controller's decision on a minute of windows at ``rmse``."""
    windows = [ErrorWindow("v", p, NOW - 60, NOW, 500, rmse, rmse) for p in (0, 1)]
    return should_retrain(Observed(now=NOW, last_run=None, active_since=NOW - 600, new_observations=0,
                                   validation_rmse=validation_rmse, windows=windows), Triggers(drift=1.0, window=60))


def test_items_drifted_by_what_the_corrections_absorb_do_not_fire_the_drift_trigger(settings: Settings, tmp_path) -> None:
    """Every item's ratings move by ±1.5 after the training: the version as trained is off by 1.5,
    the version as served (each item's correction from its first ratings) by about the noise."""
    truth = planted(users=200, items=20, d=4, seed=5)
    (tmp_path / "truth.npz").write_bytes(truth.to_npz())
    own = settings.replace(data=tmp_path, namespace=f"d{uuid.uuid4().hex[:8]}-", partitions=2, worker_metrics_port=0,
                           metrics_interval=0.5, initial_version=tmp_path / "truth.npz", keep_known=True,
                           item_shrinkage=1.0)
    topics.ensure(own)
    topic = own.topic("observations")
    rng = np.random.default_rng(0)
    shift = np.where(np.arange(20) % 2 == 0, 1.5, -1.5)
    worker = WorkerProcess(own)
    worker.start()
    follower = ItemCorrectionsFollower(own)
    metrics = clients.consumer(own, group=f"{own.app_id}-test-metrics")
    try:
        produce(own, topic, ratings(truth, rng, shift, 1000))  # the corrections learn the drift
        wait_until_committed(own, topic, worker)
        deadline = time.monotonic() + 30
        while truth.id not in follower.totals or follower.totals[truth.id].events < 1000:
            assert time.monotonic() < deadline, "the worker never published its item totals"
            time.sleep(0.1)
        time.sleep(1.0)  # the worker's own follower reads them too
        start = positions.watermarks(metrics, TopicPartition(own.topic("model-metrics"), 0))[1]
        metrics.assign([TopicPartition(own.topic("model-metrics"), 0, start)])
        later = ratings(truth, rng, shift, 1000)
        produce(own, topic, later)
        wait_until_committed(own, topic, worker)
        windows: list[ErrorWindow] = []
        deadline = time.monotonic() + 30
        while sum(w.count for w in windows) < 1000:
            assert time.monotonic() < deadline, f"windows of {sum(w.count for w in windows)} events only"
            windows += [error_window.decode(m.value()) for m in clients.arrived(metrics, 100, 0.5) if m.error() is None]
    finally:
        metrics.close()
        follower.close()
        worker.stop()
    served = np.sqrt(sum(w.rmse ** 2 * w.count for w in windows) / sum(w.count for w in windows))
    scores = np.array([observation.decode(value).score for _, value in later])
    seen = [observation.decode(value) for _, value in later]
    trained = np.sqrt(np.mean(np.square(scores - predict_many(truth, np.array([s.user_code for s in seen]),
                                                              np.array([s.item_code for s in seen])))))
    assert served < 0.3 and trained > 1.3, (served, trained)
    assert drift(served, validation_rmse=0.1) is None  # the model as served: no retrain
    assert drift(trained, validation_rmse=0.1) is not None  # what the trigger judged before: a retrain
