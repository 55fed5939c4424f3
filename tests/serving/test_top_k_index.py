"""The edge's top-k index over real versions on ``model-versions``: loaded or built before a version
is active, served from a switch's first answer, and kept across a restart without a rebuild."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import numpy as np
import pytest

from velox.control import topics, versions
from velox.model.index import ItemIndex, attach, build_for, index_of
from velox.model.store import ModelStore
from velox.model.synthetic import clustered
from velox.model.top_k import top_k
from velox.model.version import ModelVersion
from velox.schemas.model_version import VersionInfo
from velox.serving.models import Models
from velox.settings import Settings


def exact_top(version: ModelVersion, w: np.ndarray, k: int) -> list[int]:
    """The exact scan's answer: the version's table without an index."""
    return top_k(attach(version.with_items(version.item_ids, version.item_factors, version.item_bias), None), w, k).items


def info(name: str) -> VersionInfo:
    return VersionInfo(id=name, created_at=time.time(), d=8, training_end={})


@pytest.fixture
def own(settings: Settings, tmp_path) -> Settings:
    """Indexes from 1,000 items, every cell scanned (so answers equal the exact scan's); no corrections."""
    own = settings.replace(data=tmp_path, namespace=f"x{uuid.uuid4().hex[:8]}-", partitions=1,
                           item_shrinkage=float("inf"), topk_index_items=1_000, topk_breadth=10_000)
    topics.ensure(own)
    return own


def test_an_index_built_by_the_edge_is_saved_and_a_restart_loads_it_without_a_rebuild(
        own: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ModelStore(own.model_store)
    old = replace(clustered(20, 2_000, 8, seed=1, per_cluster=100), id="old")
    store.save(old, info("old"))  # saved without an index: the edge builds one
    versions.activate(own, "old", reason="test")
    models = Models(own)
    try:
        assert index_of(models.active) is not None
        w = old.user_vectors[3]
        first = top_k(models.active, w, 10)
        assert first.items == exact_top(old, w, 10)
    finally:
        models.close()
    assert store.load_index(old, 1) is not None

    def no_rebuild(*args: object, **kwargs: object) -> ItemIndex:
        raise AssertionError("the index was built again")

    monkeypatch.setattr(ItemIndex, "build", no_rebuild)
    restarted = Models(own)
    try:
        assert index_of(restarted.active) is not None
        assert top_k(restarted.active, w, 10) == first
    finally:
        restarted.close()


def test_a_version_switch_serves_the_new_versions_index_from_its_first_answer(own: Settings) -> None:
    store = ModelStore(own.model_store)
    old = replace(clustered(20, 1_500, 8, seed=1, per_cluster=100), id="old")
    new = replace(clustered(20, 3_000, 8, seed=2, per_cluster=100), id="new")
    for version in (old, new):  # as the retrain saves them: the index beside the version
        store.save(version, info(version.id), build_for(version, own.topk_index_items, own.topk_breadth))
    versions.activate(own, "old", reason="test")
    models = Models(own)
    try:
        assert models.active.id == "old" and index_of(models.active).n == 1_500
        versions.activate(own, "new", reason="test")
        deadline = time.monotonic() + 30
        while models.active.id != "new" and time.monotonic() < deadline:
            time.sleep(0.005)
        served = models.active  # the first version the edge answers with after the switch
        assert served.id == "new" and index_of(served) is not None and index_of(served).n == 3_000
        w = new.user_vectors[5]
        assert top_k(served, w, 10).items == exact_top(new, w, 10)
    finally:
        models.close()
