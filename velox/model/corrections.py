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
correct, and the version is served as trained. The estimate has a floor (``shrinkage(floor)``,
the setting ``item_shrinkage_floor``): with no noise within items it would be 0, and one rating
would set an item's whole correction.

Why: online updates move the users only; θ changes only at a retrain. When the version was
trained on little of the history, the items it knows badly (and those it does not know at all,
which it scores with zero factors and bias) hold most of what a retrain gains, and no user update
can recover it (issue 15; bench/README.md has the accuracy table with and without them). The
corrections are a pure function of the version and the log after its training end, and their
sufficient statistics (per item: Σ residual, Σ residual², n) add up over any split of the log:
the workers, which decode every event anyway, keep them per partition exactly once and publish
them (``velox.streams.item_tallies``), and every edge sums the partitions' totals
(``velox.control.item_corrections``). A new version starts them afresh from its own training end
(its batch fit has absorbed what they knew). The users' states learn on the version's features,
unchanged; the corrections are added where answers are scored.

>>> import numpy as np
>>> from velox.model.version import random_version
>>> version = random_version(3, 2, global_mean=3.0)
>>> seen = ItemCorrections(version)
>>> _ = seen.add(np.array([7, 8]), np.array([0, 5]), np.array([4.0, 5.0]))  # item 5: not in the version
>>> corrected = seen.corrected(1.0)
>>> round(corrected.score(corrected.mean_user, 5), 4)  # 3 + (5 − 3) / (1 + 1)
4.0
>>> corrected.id == version.id, int(corrected.item_ids[-1])
(True, 5)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import repeat

import numpy as np

from velox.model.batch_scores import predict_many, rows
from velox.model.version import ModelVersion

Totals = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # codes, Σ residual, Σ residual², n


class ItemTotals:
    """Per item (by id code): Σ residual, Σ residual² and the count, as arrays that grow.

    A batch costs one ``np.unique`` and a lookup per distinct item of the batch: nothing in
    proportion to the items (or users) already there.
    """

    def __init__(self) -> None:
        self._slot: dict[int, int] = {}
        self._codes = np.empty(0, np.int64)
        self._sums = np.empty(0)
        self._squares = np.empty(0)
        self._counts = np.empty(0)
        self.names: dict[int, str] = {}  # the string ids of hashed item codes: items the version may not know

    def __len__(self) -> int:
        return len(self._slot)

    def slots(self, codes: np.ndarray) -> np.ndarray:
        """Each code's slot, new codes given new slots (zeros) at the end."""
        codes = np.asarray(codes, np.int64)
        found = np.fromiter(map(self._slot.get, codes.tolist(), repeat(-1)), np.int64, len(codes))
        if (new := np.flatnonzero(found < 0)).size:
            n = len(self._slot)
            added: list[int] = []  # (not the dict's keys from n on: listing them costs every item)
            for code in codes[new].tolist():
                if code not in self._slot:
                    self._slot[code] = n + len(added)
                    added.append(code)
            found[new] = [self._slot[code] for code in codes[new].tolist()]
            self._grow(n, len(self._slot))
            self._codes[n:len(self._slot)] = added
        return found

    def _grow(self, used: int, needed: int) -> None:
        if needed <= len(self._codes):
            return
        size = max(needed, 2 * len(self._codes), 64)
        for name in ("_codes", "_sums", "_squares", "_counts"):
            old = getattr(self, name)
            grown = np.zeros(size, old.dtype)
            grown[:used] = old[:used]
            setattr(self, name, grown)

    def tally(self, items: np.ndarray, residuals: np.ndarray, names: Mapping[int, str] | None = None) -> np.ndarray:
        """Add residuals of ratings of ``items``; return the slots changed."""
        self.names.update(names or {})
        ids, where = np.unique(np.asarray(items, np.int64), return_inverse=True)
        at = self.slots(ids)
        self._sums[at] += np.bincount(where, weights=residuals, minlength=len(ids))
        self._squares[at] += np.bincount(where, weights=np.square(residuals), minlength=len(ids))
        self._counts[at] += np.bincount(where, minlength=len(ids))
        return at

    def add_totals(self, codes: np.ndarray, sums: np.ndarray, squares: np.ndarray, counts: np.ndarray,
                   names: Mapping[int, str] | None = None) -> np.ndarray:
        """Add totals of distinct ``codes`` (differences of a partition's, when the partitions are summed)."""
        self.names.update(names or {})
        at = self.slots(codes)
        self._sums[at] += sums
        self._squares[at] += squares
        self._counts[at] += counts
        return at

    def assign(self, codes: np.ndarray, sums: np.ndarray, squares: np.ndarray, counts: np.ndarray,
               names: Mapping[int, str] | None = None) -> Totals:
        """Set the totals of distinct ``codes`` (cumulative values: a later one replaces); return
        their differences from those held before."""
        self.names.update(names or {})
        at = self.slots(codes)
        change = (codes, sums - self._sums[at], squares - self._squares[at], counts - self._counts[at])
        self._sums[at], self._squares[at], self._counts[at] = sums, squares, counts
        return change

    def totals(self, slots: np.ndarray | None = None) -> Totals:
        """Copies of the totals (of ``slots``, or all)."""
        n = len(self._slot)
        at = slice(0, n) if slots is None else slots
        return (self._codes[at].copy(), self._sums[at].copy(), self._squares[at].copy(), self._counts[at].copy())

    @property
    def events(self) -> int:
        return int(self._counts[:len(self._slot)].sum())

    def count_of(self, item: int) -> int:
        slot = self._slot.get(item)
        return 0 if slot is None else int(self._counts[slot])

    def shrinkage(self, floor: float = 0.0) -> float:
        """k = σ² / τ² estimated from the residuals (see the module), at least ``floor``; ∞ when
        they show no item effect.

        >>> import numpy as np
        >>> seen = ItemTotals()
        >>> _ = seen.tally(np.array([0, 0, 1, 1]), np.array([1.0, 1.0, -1.0, -1.0]))
        >>> seen.shrinkage(), seen.shrinkage(floor=1.0)  # no noise within an item: its mean residual is its correction
        (0.0, 1.0)
        >>> _ = seen.tally(np.array([0, 0, 1, 1]), np.array([2.0, 0.0, 0.0, -2.0]))
        >>> round(seen.shrinkage(), 4)  # σ² = 2/3 around means ±1 (τ² = 1 − σ²/4)
        0.8
        """
        n = len(self._slot)
        sums, squares, counts = self._sums[:n], self._squares[:n], self._counts[:n]
        several = counts >= 2
        if not several.any():
            return math.inf
        sums, squares, counts = sums[several], squares[several], counts[several]
        means = sums / counts
        noise = float(np.sum(squares - counts * np.square(means)) / np.sum(counts - 1))
        spread = float(np.average(np.square(means) - noise / counts, weights=counts))
        return max(noise / spread, floor) if spread > 0 else math.inf

    def values(self, items: np.ndarray, shrinkage: float) -> np.ndarray:
        """c_x of each of ``items`` with shrinkage k (0 for an item with no ratings, and for every item when k is ∞)."""
        if math.isinf(shrinkage):
            return np.zeros(len(items))
        at = np.fromiter(map(self._slot.get, np.asarray(items, np.int64).tolist(), repeat(-1)), np.int64, len(items))
        known = at >= 0
        values = np.zeros(len(items))
        values[known] = self._sums[at[known]] / (self._counts[at[known]] + shrinkage)
        return values


class ItemCorrections(ItemTotals):
    """Item totals of residuals against one version; ``corrected`` serves them."""

    def __init__(self, version: ModelVersion) -> None:
        super().__init__()
        self.version = version

    def add(self, users: np.ndarray, items: np.ndarray, scores: np.ndarray,
            names: Mapping[int, str] | None = None) -> np.ndarray:
        """Ratings ``scores[k]`` of ``users[k]`` for ``items[k]`` (ids' codes): each one's residual
        against the version; ``names``: the string ids of the items' codes that are hashes. Return
        the slots changed."""
        if not len(items):
            self.names.update(names or {})
            return np.empty(0, np.int64)
        residuals = np.asarray(scores, np.float64) - predict_many(self.version, users, items)
        return self.tally(items, residuals, names)

    def corrected(self, shrinkage: float | None = None, floor: float = 0.0) -> ModelVersion:
        """The version served with these corrections (k estimated, at least ``floor``, unless given)."""
        return corrected(self.version, self, self.shrinkage(floor) if shrinkage is None else shrinkage)


def corrected(version: ModelVersion, totals: ItemTotals, shrinkage: float,
              previous: ModelVersion | None = None, measured: ModelVersion | None = None) -> ModelVersion:
    """``version`` with c_x added to its item biases (same id: the same θ, better served); items it
    does not know but the log has rated are appended with zero factors and c_x as their bias, so
    top-k can rank them too. The version itself when there is nothing to add (or k is ∞).

    ``previous``, the table served before (from the same version and totals with fewer items):
    its item ids, factors and lookup are kept when no item was appended since, and extended when
    some were, so a refresh costs a bias vector, not the whole item table again.

    ``measured``: the version the residuals were taken against, when ``version`` is it with rows
    of items described by content appended or replaced (``velox.serving.item_content``). Those
    items' residuals were taken at another bias b'_x (0 for an item the version had no row of), so
    their correction is re-centred on the bias served, b̂_x: c_x = (Σ r − n_x (b̂_x − b'_x)) / (n_x + k),
    and the served bias b̂_x + c_x moves from the content's guess to the item's mean residual as its
    ratings come (the part of the mapped factors the totals cannot see stays in them).

    >>> import numpy as np
    >>> from velox.model.version import random_version
    >>> trained = random_version(2, 2)
    >>> described = trained.with_items(np.array([0, 1, 9]), np.zeros((3, 1), np.float32), np.array([0, 0, 0.5], np.float32))
    >>> seen = ItemTotals()
    >>> _ = seen.tally(np.array([9, 9, 9]), np.array([1.0, 1.0, 1.0]))
    >>> float(corrected(described, seen, 1.0, measured=trained).item_bias[2])  # 0.5 + (3 − 3·0.5) / (3 + 1)
    0.875
    """
    if not len(totals) or math.isinf(shrinkage):
        return version
    ids, sums, _, counts = totals.totals()
    values = sums / (counts + shrinkage)
    at = rows(version.item_ids, ids)
    known = at < len(version.item_ids)
    if measured is not None and measured is not version:
        before = measured.items.rows(ids[known])
        taken_at = np.zeros(len(before), np.float32)
        taken_at[before < len(measured.item_ids)] = measured.item_bias[before[before < len(measured.item_ids)]]
        values[known] -= counts[known] * (version.item_bias[at[known]] - taken_at) / (counts[known] + shrinkage)
    bias = version.item_bias.astype(np.float64)
    bias[at[known]] += values[known]
    added = ids[~known]
    bias = np.concatenate([bias, values[~known]]).astype(np.float32)
    names = {code: totals.names[code] for code in added.tolist() if code < 0}
    n = len(version.item_ids)
    if previous is not None and previous is not version and previous.id == version.id:
        before = len(previous.item_ids) - n
        if 0 <= before <= len(added) and np.array_equal(previous.item_ids[n:], added[:before]):
            new = added[before:]
            if not len(new):
                return previous.with_items(previous.item_ids, previous.item_factors, bias)
            return previous.with_items(
                np.concatenate([previous.item_ids, new]),
                np.vstack([previous.item_factors, np.zeros((len(new), version.d - 1), np.float32)]),
                bias, names)
    return version.with_items(
        np.concatenate([version.item_ids, added]),
        np.vstack([version.item_factors, np.zeros((len(added), version.d - 1), np.float32)]),
        bias, names)
