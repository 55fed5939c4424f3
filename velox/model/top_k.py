"""The k best items for one user's weights: exact over the catalog (or given candidates), with ε-greedy.

    scores = μ + b + V · w[:-1] + w[-1]     (one matrix-vector product over the items)

``argpartition`` finds the k best in O(n), then only those k are sorted. With ε > 0 each slot,
independently with probability ε, holds a random other item instead, and says so, so feedback
logged from top-k answers is not biased only towards what the model already likes.

>>> import numpy as np
>>> from velox.model.version import random_version
>>> version = random_version(50, 4, seed=1)
>>> best = top_k(version, version.mean_user, 3)
>>> len(best.items), bool(np.all(np.diff(best.scores) <= 0)), best.explored
(3, True, [False, False, False])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from velox.model.version import ModelVersion


@dataclass(frozen=True)
class TopK:
    items: list[int]
    scores: list[float]
    explored: list[bool]  # slot i holds a random item (ε-greedy), not one of the best


def top_k(
    version: ModelVersion, w: np.ndarray, k: int, candidates: np.ndarray | None = None,
    exclude: np.ndarray | None = None, epsilon: float = 0.0, rng: np.random.Generator | None = None,
) -> TopK:
    """The ``k`` best of ``candidates`` (default: every item of the version) for weights ``w``."""
    if candidates is None and (index := version.item_index) is not None and index.covers(version):
        return index.top_k(version, w, k, exclude, epsilon, rng)  # velox.model.index: large catalogs
    ids = version.item_ids if candidates is None else np.asarray(candidates, np.int64)
    if exclude is not None and len(exclude):
        ids = ids[~np.isin(ids, exclude)]
    scores = item_scores(version, w, ids)
    k = min(k, len(ids))
    best = np.argpartition(scores, len(ids) - k)[len(ids) - k:] if 0 < k < len(ids) else np.arange(len(ids))[:k]
    best = best[np.argsort(-scores[best], kind="stable")]
    explored = [False] * k
    if epsilon > 0 and len(ids) > k:
        rng = rng or np.random.default_rng()
        others = np.setdiff1d(np.arange(len(ids)), best)
        swaps = np.flatnonzero(rng.random(k) < epsilon)
        if len(swaps):
            best = best.copy()
            best[swaps] = rng.choice(others, size=len(swaps), replace=False)
            for slot in swaps:
                explored[slot] = True
    return TopK(ids[best].tolist(), scores[best].tolist(), explored)


def item_scores(version: ModelVersion, w: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Scores of ``items`` for weights ``w``; items the version does not know get 0 factors and bias.

    The whole catalog (float32): one matrix-vector product and one addition, no id lookup.
    """
    if items is version.item_ids:
        scores = version.item_factors @ np.asarray(w[:-1], np.float32)
        scores += version.item_base
        scores += np.float32(w[-1])
        return scores
    w = np.asarray(w, np.float64)
    item_rows = version.items.rows(np.asarray(items, np.int64))
    known = item_rows < len(version.item_ids)
    scores = np.full(len(items), version.global_mean + w[-1])
    safe = item_rows[known]
    scores[known] += version.item_bias[safe] + version.item_factors[safe] @ w[:-1]
    return scores


def top_k_many(version: ModelVersion, weights: np.ndarray, ks: list[int]) -> list[TopK]:
    """Full-catalog top-k for several users at once: one matrix product for the whole batch.

    ``weights`` is (batch, d); answer j is what ``top_k(version, weights[j], ks[j])`` gives.
    """
    if (index := version.item_index) is not None and index.covers(version):
        return index.top_k_many(version, weights, ks)  # velox.model.index: one search for the batch
    scores = version.item_factors @ np.asarray(weights[:, :-1], np.float32).T  # (items, batch)
    scores += version.item_base[:, None]
    scores += np.asarray(weights[:, -1], np.float32)[None, :]
    n, deepest = len(version.item_ids), min(max(ks), len(version.item_ids))
    best = np.argpartition(scores, n - deepest, axis=0)[n - deepest:] if deepest < n else np.arange(n)[:, None].repeat(
        len(ks), axis=1)
    answers = []
    for column, k in enumerate(ks):
        rows = best[:, column]
        rows = rows[np.argsort(-scores[rows, column], kind="stable")][:k]
        answers.append(TopK(version.item_ids[rows].tolist(), scores[rows, column].tolist(), [False] * len(rows)))
    return answers
