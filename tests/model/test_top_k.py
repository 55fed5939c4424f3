import numpy as np
import pytest

from velox.model.top_k import item_scores, top_k, top_k_many
from velox.model.version import random_version

VERSION = random_version(500, 8, seed=5)
W = np.random.default_rng(2).normal(size=8).astype(np.float32)


def brute_force(ids: np.ndarray, k: int) -> list[int]:
    scores = [VERSION.score(W, int(i)) for i in ids]
    return [int(ids[j]) for j in np.argsort(scores, kind="stable")[::-1][:k]]


def test_top_k_equals_sorting_every_score() -> None:
    assert top_k(VERSION, W, 10).items == brute_force(VERSION.item_ids, 10)


def test_item_scores_match_the_versions_own_score() -> None:
    items = np.array([0, 17, 499, 10_000])  # the last one is unknown to the version
    expected = [VERSION.score(W, int(i)) for i in items]
    np.testing.assert_allclose(item_scores(VERSION, W, items), expected, rtol=1e-6)


def test_top_k_over_candidates_with_exclusions() -> None:
    candidates = np.arange(100, 140)
    result = top_k(VERSION, W, 5, candidates=candidates, exclude=np.array(brute_force(candidates, 2)))
    assert result.items == brute_force(np.setdiff1d(candidates, brute_force(candidates, 2)), 5)


@pytest.mark.parametrize("k", [0, 1, 40, 45])
def test_top_k_never_returns_more_than_there_is(k: int) -> None:
    assert len(top_k(VERSION, W, k, candidates=np.arange(40)).items) == min(k, 40)


def explored_share(version, w: np.ndarray, rng: np.random.Generator, rounds: int) -> float:
    """The share of slots ε-greedy top-10 explored in ``rounds`` answers, each answer checked: ten
    distinct items, a slot marked explored exactly when its item is not among the ten best."""
    best = set(top_k(version, w, 10).items)
    explored_slots = 0
    for _ in range(rounds):
        result = top_k(version, w, 10, epsilon=0.2, rng=rng)
        assert len(set(result.items)) == 10
        for item, explored in zip(result.items, result.explored):
            assert (item not in best) == explored
            explored_slots += explored
    return explored_slots / (10 * rounds)


def test_epsilon_greedy_marks_the_slots_it_explored() -> None:
    assert 0.15 < explored_share(VERSION, W, np.random.default_rng(9), 200) < 0.25


def test_a_batch_answers_what_each_user_alone_gets() -> None:
    version = random_version(300, 6, seed=4)
    weights = np.random.default_rng(5).normal(size=(7, 6)).astype(np.float32)
    ks = [1, 10, 3, 300, 5, 10, 2]
    for w, k, batched in zip(weights, ks, top_k_many(version, weights, ks)):
        alone = top_k(version, w, k)
        assert batched.items == alone.items
        np.testing.assert_allclose(batched.scores, alone.scores, rtol=1e-6, atol=1e-6)  # float32 sums in another order
