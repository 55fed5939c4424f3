"""The item corrections as served: counted by the workers from ``observations``, once per cluster, and
followed by the edge from ``item-corrections``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
from starlette.testclient import TestClient

from tests.serving.conftest import edge_beside_worker
from tests.streams.harness import (
    WorkerProcess,
    produce,
    session_producer,
    wait_until_committed,
)
from velox.control import topics, versions
from velox.kafka import positions
from velox.model.corrections import ItemCorrections
from velox.model.store import ModelStore
from velox.model.synthetic import planted
from velox.model.version import ModelVersion
from velox.schemas import observation, partitioning
from velox.schemas.model_version import VersionInfo
from velox.schemas.observation import Observation
from velox.serving import models as models_module
from velox.serving.live_corrections import Corrections
from velox.serving.models import Models
from velox.settings import Settings


def rating(user: int, item: int, score: float) -> Observation:
    return Observation(user=user, item=item, score=score, time=0)


def messages(events: list[Observation]) -> list[tuple[bytes, bytes]]:
    return [(e.key, observation.encode(e)) for e in events]


def formula(version: ModelVersion, events: list[Observation]) -> ItemCorrections:
    """The corrections' totals straight from their definition: every event's residual against ``version``."""
    expected = ItemCorrections(version)
    expected.add(*np.array([(e.user, e.item, e.score) for e in events]).T)
    return expected


def own_settings(settings: Settings, tmp_path, **changes: object) -> Settings:
    own = settings.replace(data=tmp_path, namespace=f"c{uuid.uuid4().hex[:8]}-", partitions=2, worker_metrics_port=0,
                           **changes)
    topics.ensure(own)
    return own


def announce(own: Settings, version: ModelVersion, training_end: dict[int, int]) -> None:
    ModelStore(own.model_store).save(version, VersionInfo(id=version.id, created_at=time.time(), d=version.d,
                                                          training_end=training_end))
    versions.activate(own, version.id, reason="test")


def test_the_workers_count_what_they_apply_after_the_training_end_and_the_edge_reads_only_their_totals(
        settings: Settings, tmp_path) -> None:
    """3,000 events after the training end: the edge's corrections equal the formula over them, from
    a handful of item-corrections messages (it never reads ``observations``), and follow the log."""
    own = own_settings(settings, tmp_path, item_shrinkage=2.0)
    topic = own.topic("observations")
    version = replace(planted(users=10, items=6, d=3, seed=4), id="v1")
    rng = np.random.default_rng(1)
    produce(own, topic, messages([rating(int(u), int(i), 5.0) for u, i in zip(rng.integers(0, 10, 20),
                                                                              rng.integers(0, 6, 20))]))
    announce(own, version, positions.end_offsets(own, topic))
    after = [rating(int(u), int(i), float(s)) for u, i, s in
             zip(rng.integers(0, 14, 3000), rng.integers(0, 8, 3000), rng.integers(1, 6, 3000))]
    produce(own, topic, messages(after))
    stranger = rating(3, 2, 1.0)  # outside its home partition: the worker moves it there, where it counts
    after.append(stranger)
    producer = session_producer(own)
    producer.produce(topic, key=stranger.key, value=observation.encode(stranger),
                     partition=1 - partitioning.home(stranger.key, 2))
    producer.produce(topic, key=b"4", value=b'{"user": 4, "item": 1, "score": "high"}', partition=0)  # dead letter
    assert producer.flush(30) == 0
    worker = WorkerProcess(own)
    worker.start()
    corrections = None
    try:
        wait_until_committed(own, topic, worker)
        corrections = Corrections(own)
        follower = corrections.follower
        expected = formula(version, after)
        assert follower is not None and follower.messages < 20 < len(after)  # its totals, not the events
        totals = follower.totals["v1"]
        assert {item: totals.count_of(item) for item in range(8)} == {item: expected.count_of(item) for item in range(8)}
        np.testing.assert_allclose(totals.values(np.arange(8), 2.0), expected.values(np.arange(8), 2.0), atol=1e-9)
        served = corrections.served(version)
        w = version.prior(3)
        for item, correction in zip(range(8), expected.values(np.arange(8), 2.0)):
            assert abs(served.version.score(w, item) - version.score(w, item) - correction) < 1e-4

        corrections.start()
        later = [rating(3, 7, 5.0)] * 5
        produce(own, topic, messages(later))
        deadline = time.monotonic() + 30
        while corrections.served(version).generation == served.generation and time.monotonic() < deadline:
            time.sleep(0.05)
        expected = formula(version, after + later)
        assert corrections.served(version).generation > served.generation
        assert abs(corrections.served(version).version.score(w, 7) - version.score(w, 7)
                   - expected.values(np.array([7]), 2.0)[0]) < 1e-4
    finally:
        if corrections is not None:
            corrections.close()
        worker.stop()


def test_with_infinite_shrinkage_nothing_is_read_and_the_version_is_served_as_trained(
        settings: Settings, tmp_path) -> None:
    own = settings.replace(data=tmp_path, namespace=f"c{uuid.uuid4().hex[:8]}-", partitions=2,
                           item_shrinkage=float("inf"))
    version = planted(users=4, items=3, d=2, seed=0)
    corrections = Corrections(own).start()
    try:
        assert corrections.served(version).version is version and corrections.follower is None
    finally:
        corrections.close()


@pytest.fixture(scope="module")
def corrected(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Settings]]:
    """An edge beside a worker, serving item corrections with k estimated (the default)."""
    with edge_beside_worker(settings.replace(data=tmp_path_factory.mktemp("corrected"))) as edge:
        yield edge


def test_the_edge_serves_the_corrections_as_the_log_moves_them_past_its_cache_and_ranks_new_items(corrected) -> None:
    """User 7's record does not change, so only the corrections' generation in the cache key lets the
    answer move; item 777 is not in the version (50 items), only in the log."""
    client, own = corrected
    params = {"user": 7, "item": 9}
    before = client.get("/v1/models/default/predict", params=params).json()
    assert client.get("/v1/models/default/predict", params=params).json()["score"] == before["score"]  # cached
    produce(own, own.topic("observations"), messages(
        [rating(1000 + u, 9, 5.0) for u in range(30)] + [rating(2000 + u, 777, 5.0) for u in range(30)]))
    deadline = time.monotonic() + 30
    after = before
    while after["score"] == before["score"] and time.monotonic() < deadline:
        time.sleep(0.1)
        after = client.get("/v1/models/default/predict", params=params).json()
    assert after["score"] > before["score"], (before, after)
    best = client.get("/v1/models/default/top_k", params={"user": 123456, "k": 3}).json()
    assert 777 in [entry["item"] for entry in best["items"]], best
    new_item = client.get("/v1/models/default/predict", params={"user": 123456, "item": 777}).json()
    assert new_item["known_item"] is False  # scored with its correction; the version still does not know it
    metrics = client.get("/metrics").text
    assert "velox_edge_item_shrinkage " in metrics and "velox_edge_corrected_items 7.0" in metrics, metrics


def test_a_new_version_becomes_active_once_its_corrections_are_published_and_the_old_stays_corrected(
        settings: Settings, tmp_path) -> None:
    # k fixed: estimated from a few dozen ratings it can come out so large that an item's correction
    # vanishes in float32, and the old version's answers below would equal its trained ones.
    own = own_settings(settings, tmp_path, item_shrinkage=1.0)
    topic = own.topic("observations")
    old, new = (replace(planted(users=10, items=6, d=3, seed=seed), id=name) for seed, name in ((1, "old"), (2, "new")))
    announce(own, old, {})
    rng = np.random.default_rng(2)
    first = [rating(int(u), int(i), float(s)) for u, i, s in
             zip(rng.integers(0, 10, 40), rng.integers(0, 6, 40), rng.integers(1, 6, 40))]
    produce(own, topic, messages(first))
    worker = WorkerProcess(own)
    worker.start()
    models = None
    try:
        wait_until_committed(own, topic, worker)
        models = Models(own)
        assert models.active.id == "old" and models.corrections.follower.totals["old"].events == 40
        training_end = positions.end_offsets(own, topic)
        later = [rating(int(u), 5, 5.0) for u in rng.integers(0, 10, 10)]
        produce(own, topic, messages(later))
        announce(own, new, training_end)
        w = new.prior(3)
        deadline = time.monotonic() + 60
        while models.active.id != "new":
            # Until the switch, and after it, a record on the old version is answered with its corrections.
            assert models.serving("old").version.item_bias is not old.item_bias
            assert time.monotonic() < deadline, "the new version was never activated"
            time.sleep(0.01)
        assert models.corrections.follower.published("new")
        wait_until_committed(own, topic, worker)
        deadline = time.monotonic() + 30
        while models.corrections.follower.totals["new"].events < len(later) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert models.corrections.follower.totals["new"].events == len(later)  # counted from its training end
        expected = formula(new, later)
        deadline = time.monotonic() + 30
        while (abs(models.active.score(w, 5) - new.score(w, 5) - expected.values(np.array([5]), 1.0)[0]) >= 1e-4
               and time.monotonic() < deadline):
            time.sleep(0.05)  # rebuilt at most every second
        assert abs(models.active.score(w, 5) - new.score(w, 5) - expected.values(np.array([5]), 1.0)[0]) < 1e-4
        before = models.serving("old").version
        assert before.id == "old" and before.score(w, 0) != old.score(w, 0)
    finally:
        if models is not None:
            models.close()
        worker.stop()


def test_a_version_whose_corrections_nobody_publishes_is_activated_without_them_after_a_while(
        settings: Settings, tmp_path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """No worker runs: an operator's activation waits for the corrections, then goes ahead, said in the log."""
    monkeypatch.setattr(models_module, "UNPUBLISHED_AFTER", 1.0)
    own = own_settings(settings, tmp_path, item_shrinkage=1.0)
    old, new = (replace(planted(users=10, items=6, d=3, seed=seed), id=name) for seed, name in ((1, "old"), (2, "new")))
    announce(own, old, {})
    models = Models(own)
    try:
        assert models.active.id == "old"
        with caplog.at_level("WARNING", logger="velox.serving.models"):
            announce(own, new, {0: 0, 1: 0})
            time.sleep(0.5)
            assert models.active.id == "old"  # still waiting for its corrections
            deadline = time.monotonic() + 30
            while models.active.id != "new":
                assert time.monotonic() < deadline, "the new version was never activated"
                time.sleep(0.05)
        assert not models.corrections.follower.published("new")
        assert any("activated without its item corrections" in r.getMessage() for r in caplog.records)
    finally:
        models.close()
