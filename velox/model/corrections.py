"""Item corrections: what the ratings since a version's training end say about each item that the
version's item features miss.

    c_x = Σ (r − r̂(u, x)) / (n_x + k),   served as   score(u, x) = μ + b_x + c_x + w_u · f(x)

over the item's n_x ratings after the version's training end, r̂ the version's own score for the
user (their trained vector, the mean user if it does not know them) and k the shrinkage: a prior
of k ratings with no residual, so an item rated twice moves little and one rated a hundred times
moves almost to its mean residual. It is the shrunk item bias of Koren ("Factorization meets the
neighborhood", KDD 2008, §2.1: b_i = Σ (r_ui − μ) / (λ₂ + |R(i)|)) taken on the version's
residuals instead of on the mean.

k is estimated from the same residuals unless given (empirical Bayes, the James–Stein ratio):
k = σ² / τ², σ² the variance of a rating's residual around its item's mean residual (pooled over
items rated twice or more), τ² the prior variance of the items' true corrections around 0 (the
mean square of their mean residuals, each less the σ²/n_x its own noise adds, weighted by n_x).
With that k, c_x is the posterior mean of the item's correction under a normal prior N(0, τ²);
when the mean residuals are no larger than their noise explains (τ² ≤ 0) there is nothing to
correct, and the version is served as trained.

Why: online updates move the users only; θ changes only at a retrain. When the version was
trained on little of the history, the items it knows badly (and those it does not know at all,
which it scores with zero factors and bias) hold most of what a retrain gains, and no user update
can recover it (issue 15; bench/README.md has the accuracy table with and without them). The
corrections are a pure function of the version and the log after its training end: every edge
computes the same ones by reading the log, nothing needs storing exactly once, and a new version
starts them afresh from its own training end (its batch fit has absorbed what they knew). The
users' states learn on the version's features, unchanged; the corrections are added where
answers are scored.

>>> import numpy as np
>>> from velox.model.version import random_version
>>> version = random_version(3, 2, global_mean=3.0)
>>> seen = ItemCorrections(version)
>>> seen.add(np.array([7, 8]), np.array([0, 5]), np.array([4.0, 5.0]))  # item 5: not in the version
>>> corrected = seen.corrected(1.0)
>>> round(corrected.score(corrected.mean_user, 5), 4)  # 3 + (5 − 3) / (1 + 1)
4.0
>>> corrected.id == version.id, int(corrected.item_ids[-1])
(True, 5)
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from velox.model.batch_scores import predict_many, rows
from velox.model.version import ModelVersion


class ItemCorrections:
    """Residual sums, squares and counts per item, against one version; ``corrected`` serves them."""

    def __init__(self, version: ModelVersion) -> None:
        self.version = version
        self.sums: dict[int, float] = {}
        self.squares: dict[int, float] = {}
        self.counts: dict[int, int] = {}
        self.names: dict[int, str] = {}  # the string ids of hashed item codes: items the version may not know
        self.events = 0

    def add(self, users: np.ndarray, items: np.ndarray, scores: np.ndarray,
            names: Mapping[int, str] | None = None) -> None:
        """Ratings ``scores[k]`` of ``users[k]`` for ``items[k]`` (ids' codes): each one's residual
        against the version; ``names``: the string ids of the items' codes that are hashes."""
        self.names.update(names or {})
        if not len(items):
            return
        residuals = np.asarray(scores, np.float64) - predict_many(self.version, users, items)
        ids, where = np.unique(np.asarray(items, np.int64), return_inverse=True)
        sums, squares = np.bincount(where, weights=residuals), np.bincount(where, weights=np.square(residuals))
        for item, total, square, count in zip(ids.tolist(), sums.tolist(), squares.tolist(),
                                              np.bincount(where).tolist()):
            self.sums[item] = self.sums.get(item, 0.0) + total
            self.squares[item] = self.squares.get(item, 0.0) + square
            self.counts[item] = self.counts.get(item, 0) + count
        self.events += len(items)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        ids = np.fromiter(self.sums, np.int64, len(self.sums))
        return (ids, np.fromiter(self.sums.values(), np.float64, len(ids)),
                np.fromiter(self.squares.values(), np.float64, len(ids)),
                np.fromiter(self.counts.values(), np.float64, len(ids)))

    def shrinkage(self) -> float:
        """k = σ² / τ² estimated from the residuals (see the module); ∞ when they show no item effect.

        >>> import numpy as np
        >>> from velox.model.version import random_version
        >>> seen = ItemCorrections(random_version(2, 2))
        >>> seen.add(np.zeros(4), np.array([0, 0, 1, 1]), np.array([1.0, 1.0, -1.0, -1.0]))
        >>> seen.shrinkage()  # no noise within an item: its mean residual is its correction
        0.0
        >>> seen.add(np.zeros(4), np.array([0, 0, 1, 1]), np.array([2.0, 0.0, 0.0, -2.0]))
        >>> round(seen.shrinkage(), 4)  # σ² = 2/3 around means ±1 (τ² = 1 − σ²/4)
        0.8
        """
        _, sums, squares, counts = self._arrays()
        several = counts >= 2
        if not several.any():
            return math.inf
        sums, squares, counts = sums[several], squares[several], counts[several]
        means = sums / counts
        noise = float(np.sum(squares - counts * np.square(means)) / np.sum(counts - 1))
        spread = float(np.average(np.square(means) - noise / counts, weights=counts))
        return noise / spread if spread > 0 else math.inf

    def values(self, items: np.ndarray, shrinkage: float | None = None) -> np.ndarray:
        """c_x of each of ``items`` (0 for an item with no ratings, and for every item when k is ∞);
        k estimated unless given."""
        k = self.shrinkage() if shrinkage is None else shrinkage
        if math.isinf(k):
            return np.zeros(len(items))
        return np.array([self.sums.get(item, 0.0) / (self.counts.get(item, 0) + k)
                         for item in np.asarray(items, np.int64).tolist()])

    def corrected(self, shrinkage: float | None = None) -> ModelVersion:
        """The version with c_x added to its item biases (same id: the same θ, better served); items
        it does not know but the log has rated are added with zero factors and c_x as their bias, so
        top-k can rank them too. The version itself when there is nothing to add (or k is ∞)."""
        version = self.version
        k = self.shrinkage() if shrinkage is None else shrinkage
        if not self.sums or math.isinf(k):
            return version
        ids, sums, _, counts = self._arrays()
        values = sums / (counts + k)
        at = rows(version.item_ids, ids)
        known = at < len(version.item_ids)
        bias = version.item_bias.astype(np.float64)
        bias[at[known]] += values[known]
        added = ids[~known]
        return version.with_items(
            np.concatenate([version.item_ids, added]),
            np.vstack([version.item_factors, np.zeros((len(added), version.d - 1), np.float32)]),
            np.concatenate([bias, values[~known]]).astype(np.float32),
            {code: self.names[code] for code in added.tolist() if code < 0},
        )
