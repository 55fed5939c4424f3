"""Item corrections: Koren's shrunk item bias on a version's residuals, and its empirical-Bayes shrinkage."""

from __future__ import annotations

import math

import numpy as np

from velox.model.batch_scores import predict_many
from velox.model.corrections import ItemCorrections, ItemTotals, corrected
from velox.model.synthetic import planted
from velox.model.top_k import top_k


def test_each_correction_is_the_items_residual_sum_over_its_count_plus_k() -> None:
    version = planted(users=20, items=10, d=3, seed=1)
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 25, 200), rng.integers(0, 12, 200)  # some users and items it does not know
    scores = rng.normal(3.5, 1.0, 200)
    seen = ItemCorrections(version)
    for part in np.array_split(np.arange(200), 7):  # in batches, as a reader takes them
        seen.add(users[part], items[part], scores[part])
    residuals = scores - predict_many(version, users, items)
    for item in range(12):
        mine = residuals[items == item]
        assert math.isclose(seen.values(np.array([item]), 4.0)[0], mine.sum() / (len(mine) + 4.0), abs_tol=1e-9)
    assert seen.values(np.array([99]), 4.0)[0] == 0.0
    assert not seen.values(np.arange(12), math.inf).any()


def test_the_estimated_shrinkage_is_the_noise_over_the_spread_of_the_items_effects() -> None:
    """Planted: each item's residuals are its effect (variance τ² = 0.25) plus noise (σ² = 1), so k = 4."""
    version = planted(users=1, items=1, d=2, seed=0)
    rng = np.random.default_rng(3)
    effects = rng.normal(0.0, 0.5, 2000)
    items = np.repeat(np.arange(2000), 30)
    users = np.full(len(items), 10**6)  # unknown to the version: the mean user, as every reader scores them
    scores = predict_many(version, users, items) + effects[items] + rng.normal(0.0, 1.0, len(items))
    seen = ItemCorrections(version)
    seen.add(users, items, scores)
    assert 3.6 < seen.shrinkage() < 4.4
    # No effect, only noise: nothing to correct.
    flat = ItemCorrections(version)
    flat.add(users, items, predict_many(version, users, items) + rng.normal(0.0, 1.0, len(items)))
    assert math.isinf(flat.shrinkage()) or flat.shrinkage() > 100
    assert flat.corrected(math.inf) is version


def test_the_corrected_version_scores_with_the_corrections_and_ranks_items_only_the_log_has_seen() -> None:
    version = planted(users=5, items=4, d=3, seed=2)
    seen = ItemCorrections(version)
    users = np.array([0, 1, 2, 0, 1])
    items = np.array([1, 1, 1, 40, 40])  # item 40: not in the version
    seen.add(users, items, predict_many(version, users, items) + np.array([1.0, 1.0, 1.0, 3.0, 3.0]))
    corrected = seen.corrected(1.0)
    assert corrected.id == version.id and corrected.knows_item(40)
    w = version.prior(3)
    assert math.isclose(corrected.score(w, 1), version.score(w, 1) + 3.0 / 4.0, abs_tol=1e-5)
    assert math.isclose(corrected.score(w, 40), version.score(w, 40) + 6.0 / 3.0, abs_tol=1e-5)
    assert math.isclose(corrected.score(w, 2), version.score(w, 2), abs_tol=1e-6)
    assert 40 in top_k(corrected, w, 5).items and 40 not in top_k(version, w, 5).items
    assert corrected.user_vectors is version.user_vectors and corrected.users is version.users  # shared


def test_the_estimated_shrinkage_has_a_floor() -> None:
    """With no noise within items k comes out 0: one rating would set an item's whole correction."""
    version = planted(users=3, items=4, d=2, seed=0)
    users, items = np.zeros(4, np.int64), np.array([0, 0, 1, 1])
    seen = ItemCorrections(version)
    seen.add(users, items, predict_many(version, users, items) + np.array([1.0, 1.0, -1.0, -1.0]))
    assert seen.shrinkage() == 0.0 and seen.shrinkage(floor=1.0) == 1.0
    assert math.isclose(seen.values(np.array([0]), seen.shrinkage(floor=1.0))[0], 2.0 / 3.0)
    w = version.prior(0)
    assert math.isclose(seen.corrected(floor=1.0).score(w, 0), version.score(w, 0) + 2.0 / 3.0, abs_tol=1e-5)


def test_a_refresh_from_the_previous_table_equals_a_rebuild_and_keeps_its_lookup() -> None:
    version = planted(users=5, items=30, d=3, seed=3)
    rng = np.random.default_rng(4)
    seen = ItemCorrections(version)
    seen.add(rng.integers(0, 5, 50), rng.integers(0, 35, 50), rng.normal(3.0, 1.0, 50))
    first = corrected(version, seen, 2.0)
    seen.add(rng.integers(0, 5, 50), rng.integers(0, 30, 50), rng.normal(3.0, 1.0, 50))  # no item appended
    again = corrected(version, seen, 2.0, previous=first)
    assert again.item_ids is first.item_ids and again.items.sorted is first.items.sorted
    seen.add(np.array([1, 2]), np.array([77, 78]), np.array([5.0, 1.0]))  # two appended
    grown = corrected(version, seen, 2.0, previous=again)
    rebuilt = corrected(version, seen, 2.0)
    np.testing.assert_array_equal(grown.item_ids, rebuilt.item_ids)
    np.testing.assert_array_equal(grown.item_bias, rebuilt.item_bias)
    assert all(grown.knows_item(item) for item in rebuilt.item_ids.tolist())
    w = version.prior(1)
    assert all(math.isclose(grown.score(w, item), rebuilt.score(w, item), abs_tol=1e-6) for item in (0, 7, 33, 77, 78))


class _Unlisted(dict):
    """A slot lookup that refuses to be listed: a batch may look its items up, never walk them all."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        raise AssertionError("the items held were listed")

    def keys(self):  # type: ignore[no-untyped-def]
        raise AssertionError("the items held were listed")


def test_a_batch_with_new_items_costs_its_items_not_those_held() -> None:
    """The worker counts every batch of every partition (velox.streams.item_tallies): new items
    were given slots by listing every item held, per batch, a stall that grew with the items
    (bench/stream.py's latency run). Slots and codes stay as before."""
    totals = ItemTotals()
    totals.tally(np.array([5, 7]), np.array([1.0, 2.0]))
    totals._slot = _Unlisted(totals._slot)
    at = totals.tally(np.array([9, 5, 11, 9]), np.array([1.0, 1.0, 1.0, 1.0]))
    assert sorted(at.tolist()) == [0, 2, 3]
    codes, sums, _, counts = totals.totals()
    assert codes.tolist() == [5, 7, 9, 11] and sums.tolist() == [2.0, 2.0, 2.0, 1.0] and counts.tolist() == [2, 1, 2, 1]
