"""The top-k index (velox.model.index): its answers against the exact scan's, on small catalogs.

No timing is asserted: bench/topk.py measures speed. Recall is a statistical check with a fixed seed.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.model.test_top_k import explored_share
from velox.model.corrections import ItemCorrections
from velox.model.index import BREADTH, ItemIndex, attach, build_for, index_of
from velox.model.store import ModelStore
from velox.model.synthetic import clustered
from velox.model.top_k import top_k, top_k_many
from velox.model.version import ModelVersion
from velox.schemas.model_version import VersionInfo

BENCH_RECALL = 0.95  # bench/topk.py's target at 1,000,000 items, which the default breadth meets there
MARGIN = 0.05


def exact(version: ModelVersion) -> ModelVersion:
    """The same version without its index: the exact scan's answers."""
    return attach(version.with_items(version.item_ids, version.item_factors, version.item_bias), None)


@pytest.fixture(scope="module")
def catalog() -> ModelVersion:
    return clustered(200, 5_000, 12, seed=3, per_cluster=250)


@pytest.fixture(scope="module")
def indexed(catalog: ModelVersion) -> ModelVersion:
    """The catalog with an index that scans every cell: approximate only in its method, so its answers are exact."""
    index = ItemIndex.build(catalog, threads=1)
    index.breadth = index.index.nlist
    return attach(catalog.with_items(catalog.item_ids, catalog.item_factors, catalog.item_bias), index)


def corrected(version: ModelVersion, seed: int = 0) -> ModelVersion:
    """``version`` served with item corrections: some biases moved both ways, 20 items appended."""
    rng = np.random.default_rng(seed)
    n = len(version.item_ids)
    items = np.concatenate([rng.integers(0, n, 3_000), n + rng.integers(0, 20, 300)])
    shift = np.where(items % 5 == 0, 2.0, -0.5)
    seen = ItemCorrections(version)
    seen.add(rng.integers(0, 200, len(items)), items, version.global_mean + shift + rng.normal(0, 0.3, len(items)))
    return seen.corrected(1.0)


def test_indexed_top_k_equals_exact_where_the_answer_is_unambiguous(indexed: ModelVersion) -> None:
    for user in range(50):
        w = indexed.user_vectors[user]
        got, want = top_k(indexed, w, 10), top_k(exact(indexed), w, 10)
        assert got.items == want.items
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5)


def test_with_corrections_the_served_biases_rank_and_score(indexed: ModelVersion) -> None:
    served = corrected(indexed)
    assert index_of(served) is index_of(indexed)  # carried along, not rebuilt
    for user in range(50):
        w = indexed.user_vectors[user]
        got, want = top_k(served, w, 10), top_k(exact(served), w, 10)
        assert got.items == want.items
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5)


def test_recall_at_the_default_breadth_on_a_random_catalog() -> None:
    version = clustered(300, 20_000, 50, seed=11)
    served = corrected(attach(version, ItemIndex.build(version, BREADTH, threads=1)), seed=1)
    hits = [len(set(top_k(served, w, 10).items) & set(top_k(exact(served), w, 10).items)) / 10
            for w in version.user_vectors]
    assert np.mean(hits) >= BENCH_RECALL - MARGIN


def test_candidates_are_scored_exactly(indexed: ModelVersion) -> None:
    served = corrected(indexed)
    candidates = np.array([3, 5_003, 17, 4_000, 2_500, 99_999])  # an appended item and an unknown one
    w = indexed.user_vectors[1]
    assert top_k(served, w, 4, candidates=candidates) == top_k(exact(served), w, 4, candidates=candidates)


def test_excluded_items_never_come_back_and_k_remain(indexed: ModelVersion) -> None:
    served = corrected(indexed)
    w = indexed.user_vectors[2]
    seen = np.array(top_k(exact(served), w, 30).items)  # the user's 30 best: all of them excluded
    got = top_k(served, w, 10, exclude=seen)
    assert len(got.items) == 10 and not set(got.items) & set(seen.tolist())
    assert got.items == top_k(exact(served), w, 10, exclude=seen).items


def test_an_appended_item_outranks_indexed_ones_when_its_corrected_score_is_higher(indexed: ModelVersion) -> None:
    new_item = 1_000_000
    seen = ItemCorrections(indexed)
    seen.add(np.zeros(50, np.int64), np.full(50, new_item), np.full(50, indexed.global_mean + 100.0))
    served = seen.corrected(1.0)
    best = top_k(served, indexed.user_vectors[0], 5)
    assert best.items[0] == new_item
    assert best.items == top_k(exact(served), indexed.user_vectors[0], 5).items


def test_an_item_the_corrections_raised_from_far_below_enters(indexed: ModelVersion) -> None:
    w = indexed.user_vectors[4]
    worst = top_k(exact(indexed), -w, 1).items[0]  # outside any candidate list the index gives
    seen = ItemCorrections(indexed)
    seen.add(np.zeros(50, np.int64), np.full(50, worst), np.full(50, indexed.global_mean + 100.0))
    assert top_k(seen.corrected(1.0), w, 3).items[0] == worst


def test_many_raised_items_entering_at_once_are_ranked_once_each(indexed: ModelVersion) -> None:
    raised = np.arange(0, len(indexed.item_ids), 4)[:1_200]  # more than a handful: the rows are told apart by isin
    seen = ItemCorrections(indexed)
    seen.add(np.zeros(len(raised), np.int64), indexed.item_ids[raised], np.full(len(raised), indexed.global_mean + 100.0))
    served = seen.corrected(1.0)
    for user in range(5):
        w = indexed.user_vectors[user]
        got = top_k(served, w, 20)
        assert len(set(got.items)) == 20 and got.items == top_k(exact(served), w, 20).items


def test_a_batch_answers_what_each_user_alone_gets(indexed: ModelVersion) -> None:
    served = corrected(indexed)
    weights = indexed.user_vectors[:6]
    ks = [1, 5, 10, 3, 10, 7]
    assert top_k_many(served, weights, ks) == [top_k(served, w, k) for w, k in zip(weights, ks)]


def test_epsilon_greedy_marks_the_slots_it_explored(indexed: ModelVersion) -> None:
    assert 0.1 < explored_share(indexed, indexed.user_vectors[5], np.random.default_rng(4), 100) < 0.3


def test_small_catalogs_get_no_index(catalog: ModelVersion) -> None:
    assert build_for(catalog, min_items=len(catalog.item_ids) + 1) is None


def test_the_index_is_saved_beside_its_version_and_loaded_as_it_was(indexed: ModelVersion, tmp_path) -> None:
    store = ModelStore(str(tmp_path))
    info = VersionInfo(id=indexed.id, created_at=0.0, d=indexed.d, training_end={}, training_rows=0,
                       holdout_rows=0, validation_rmse=None, params={})
    store.save(indexed, info, index_of(indexed))
    loaded = store.load(indexed.id)
    index = store.load_index(loaded, breadth=7)
    assert index is not None and index.breadth == 7 and index.n == len(indexed.item_ids)
    index.breadth = index.index.nlist
    w = indexed.user_vectors[9]
    assert top_k(attach(loaded, index), w, 10) == top_k(indexed, w, 10)


def test_an_index_of_another_catalog_is_refused(indexed: ModelVersion) -> None:
    other = clustered(10, 600, 12, seed=1, per_cluster=100)
    with pytest.raises(ValueError, match="is not version"):
        ItemIndex.from_bytes(index_of(indexed).to_bytes(), other)


def test_items_described_by_content_are_ranked_exactly_beside_the_index(indexed: ModelVersion) -> None:
    """Appended rows with factors (an item mapped from its attributes) enter each user's answer where
    their score puts them, as the exact scan ranks them: the index never saw them."""
    rng = np.random.default_rng(5)
    n, users = len(indexed.item_ids), indexed.user_vectors[:40]
    # Each new item is the taste of one user, scaled: first in that user's list, absent from most others'.
    # More of them than k: the k best by bias alone (enough for zero factors) would miss most.
    factors = (20.0 * users[:, :-1] / np.linalg.norm(users[:, :-1], axis=1, keepdims=True)).astype(np.float32)
    described = indexed.with_items(np.concatenate([indexed.item_ids, n + np.arange(40)]),
                                   np.vstack([indexed.item_factors, factors]),
                                   np.concatenate([indexed.item_bias, rng.normal(0, 0.1, 40).astype(np.float32)]))
    assert index_of(described) is not None
    entered = 0
    for w in users:
        got, want = top_k(described, w, 10), top_k(exact(described), w, 10)
        assert got.items == want.items
        entered += any(item >= n for item in got.items)
    assert entered >= 30
