"""The edge's item corrections read from a real ``observations`` topic: what a worker applies counts, once."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
from starlette.testclient import TestClient

from tests.serving.conftest import edge_beside_worker
from tests.streams.harness import produce, session_producer
from velox.control import topics, versions
from velox.kafka import positions
from velox.model.corrections import ItemCorrections
from velox.model.store import ModelStore
from velox.model.synthetic import planted
from velox.schemas import observation, partitioning
from velox.schemas.model_version import VersionInfo
from velox.schemas.observation import Observation
from velox.serving.live_corrections import Corrections
from velox.serving.models import Models
from velox.settings import Settings


def rating(user: int, item: int, score: float) -> Observation:
    return Observation(user=user, item=item, score=score, time=0)


def messages(events: list[Observation]) -> list[tuple[bytes, bytes]]:
    return [(e.key, observation.encode(e)) for e in events]


def test_the_corrections_read_what_workers_apply_after_the_training_end_and_follow_the_log(
        settings: Settings, tmp_path) -> None:
    own = settings.replace(data=tmp_path, namespace=f"c{uuid.uuid4().hex[:8]}-", partitions=2, item_shrinkage=2.0)
    topics.ensure(own)
    topic = own.topic("observations")
    version = planted(users=10, items=6, d=3, seed=4)
    rng = np.random.default_rng(1)
    trained = [rating(int(u), int(i), 5.0) for u, i in zip(rng.integers(0, 10, 20), rng.integers(0, 6, 20))]
    produce(own, topic, messages(trained))
    training_end = positions.end_offsets(own, topic)
    after = [rating(int(u), int(i), float(s)) for u, i, s in
             zip(rng.integers(0, 14, 60), rng.integers(0, 8, 60), rng.integers(1, 6, 60))]
    produce(own, topic, messages(after))
    stranger = rating(3, 2, 1.0)  # outside its home partition: a worker moves it there, where it counts
    elsewhere = 1 - partitioning.home(stranger.key, 2)
    producer = session_producer(own)
    producer.produce(topic, key=stranger.key, value=observation.encode(stranger), partition=elsewhere)
    producer.produce(topic, key=b"4", value=b'{"user": 4, "item": 1, "score": "high"}', partition=0)  # dead letter
    assert producer.flush(30) == 0

    corrections = Corrections(own, version, training_end)
    try:
        expected = ItemCorrections(version)
        expected.add(*np.array([(e.user, e.item, e.score) for e in after]).T)
        assert corrections.seen.counts == expected.counts
        items = np.arange(8)
        np.testing.assert_allclose(corrections.seen.values(items, 2.0), expected.values(items, 2.0), atol=1e-9)
        served = corrections.served
        w = version.prior(3)
        for item, correction in zip(range(8), expected.values(np.arange(8), 2.0)):
            assert abs(served.version.score(w, item) - version.score(w, item) - correction) < 1e-4

        corrections.start()
        produce(own, topic, messages([rating(3, 7, 5.0)] * 5))
        deadline = time.monotonic() + 30
        while corrections.served.generation == served.generation and time.monotonic() < deadline:
            time.sleep(0.05)
        expected.add(np.full(5, 3), np.full(5, 7), np.full(5, 5.0))
        assert corrections.served.generation > served.generation
        assert abs(corrections.served.version.score(w, 7) - version.score(w, 7)
                   - expected.values(np.array([7]), 2.0)[0]) < 1e-4
    finally:
        corrections.close()


def test_with_infinite_shrinkage_nothing_is_read_and_the_version_is_served_as_trained(
        settings: Settings, tmp_path) -> None:
    own = settings.replace(data=tmp_path, namespace=f"c{uuid.uuid4().hex[:8]}-", partitions=2,
                           item_shrinkage=float("inf"))
    version = planted(users=4, items=3, d=2, seed=0)
    corrections = Corrections(own, version, {}).start()
    try:
        assert corrections.served.version is version and corrections.reader is None
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


def test_a_new_version_becomes_active_with_its_own_corrections_read_from_its_training_end(
        settings: Settings, tmp_path) -> None:
    # k fixed: estimated from a few dozen ratings it can come out so large that an item's correction
    # vanishes in float32, and the old version's answers below would equal its trained ones.
    own = settings.replace(data=tmp_path, namespace=f"c{uuid.uuid4().hex[:8]}-", partitions=2, item_shrinkage=1.0)
    topics.ensure(own)
    topic, store = own.topic("observations"), ModelStore(own.model_store)
    old, new = (replace(planted(users=10, items=6, d=3, seed=seed), id=name) for seed, name in ((1, "old"), (2, "new")))
    store.save(old, VersionInfo(id="old", created_at=time.time(), d=3, training_end={}))
    versions.activate(own, "old", reason="test")
    rng = np.random.default_rng(2)
    produce(own, topic, messages([rating(int(u), int(i), float(s)) for u, i, s in
                                  zip(rng.integers(0, 10, 40), rng.integers(0, 6, 40), rng.integers(1, 6, 40))]))
    models = Models(own)
    try:
        assert models.active.id == "old" and models.corrections.seen.events == 40
        store.save(new, VersionInfo(id="new", created_at=time.time(), d=3, training_end=positions.end_offsets(own, topic)))
        later = [rating(int(u), 5, 5.0) for u in rng.integers(0, 10, 10)]
        produce(own, topic, messages(later))
        versions.activate(own, "new", reason="test")
        deadline = time.monotonic() + 30
        while models.active.id != "new" and time.monotonic() < deadline:
            time.sleep(0.01)
        corrections = models.corrections  # as the switch left it: read to the log's end already
        assert models.active.id == "new" and corrections.seen.version.id == "new"
        assert corrections.seen.events == 10 and corrections.seen.counts == {5: 10}
        expected = ItemCorrections(new)
        expected.add(*np.array([(e.user, e.item, e.score) for e in later]).T)
        w = new.prior(3)
        assert abs(models.active.score(w, 5) - new.score(w, 5) - expected.values(np.array([5]), 1.0)[0]) < 1e-4
        # A record the swap has not rebuilt yet is still answered as before the switch: with the old
        # version's corrections, not as it was trained.
        before = models.serving("old").version
        assert before.id == "old" and before.item_bias is not old.item_bias
        assert before.score(w, 0) != old.score(w, 0)
    finally:
        models.close()
