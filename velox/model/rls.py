"""Exact ridge regression on one user's observations, kept incrementally.

After observations (fᵢ, rᵢ) the weights are the closed-form ridge solution centred on the prior
w₀ (Velox, Eq. 2, with a prior):

    w = A⁻¹ b,    A = s I + Σ fᵢ fᵢᵀ,    b = s w₀ + Σ rᵢ fᵢ,    s = λ (1 + n_u / n₀)

r is the observed score minus the global mean and the item's bias. The prior's strength s grows
with n_u, the user's ratings in the version's training set: Spark's ALS (ALS-WR, Zhou et al.,
2008) regularises each user in proportion to their ratings, so the precision of a trained vector
grows with the evidence behind it, and a user the version learned from 500 ratings is not carried
away by a few new ones. Online evidence needs no such term: A already counts it. n₀
(``evidence``) is the training count at which the prior's strength has doubled; n₀ = ∞ gives
every user the same λ.

A is kept in one of two exact forms. While a user has fewer observations m on the version than
dimensions d, by the observations themselves (the state stores their items; the version's
features give F, their m×d matrix), and the Woodbury identity solves a system of m unknowns
instead of d:

    A⁻¹ v = (v − Fᵀ (s I + F Fᵀ)⁻¹ F v) / s

From the d-th observation on, by A⁻¹ itself, each observation a rank-one update of A that
Sherman–Morrison applies to the inverse in O(d²):

    A⁻¹ ← A⁻¹ − (A⁻¹ f)(A⁻¹ f)ᵀ / (1 + fᵀ A⁻¹ f)

Most users stay in the first form, where an observation adds one item id to the stored state
instead of rewriting A⁻¹'s d(d+1)/2 float64 (bytes per event: bench/stream.py). One row (user)
at a time or many at once.

>>> import numpy as np
>>> rule = RLS(l2=1.0)
>>> state = rule.start("v1", np.zeros(2, dtype=np.float32), 0)
>>> stats = Stats.of(state, features=lambda items: np.zeros((len(items), 2)), room=1)
>>> rule.update(stats, np.array([[1.0, 0.0]]), np.array([3.0]), np.zeros((1, 2)), np.array([0])).w.tolist()
[[1.5, 0.0]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from velox.model.stats import Stats
from velox.schemas.user_state import NO_ITEMS, UserState


@dataclass(frozen=True)
class RLS:
    # The defaults are the setting ``velox evaluate`` chose most often in bench/accuracy.py's table.
    l2: float = 10.0
    evidence: float = 100.0
    name = "rls"

    def start(self, version: str, prior: np.ndarray, trained: int) -> UserState:
        strength = self.l2 * (1.0 + trained / self.evidence)
        return UserState(version, np.array(prior, dtype=np.float32), count=trained,
                         b=strength * prior.astype(np.float64), observed=NO_ITEMS, strength=strength)

    def resume(self, state: UserState, features: Callable[[Sequence[int]], np.ndarray]) -> UserState:
        """``state`` in the form its next update takes: A⁻¹ itself once the user has d observations."""
        if state.observed is None or len(state.observed) < state.w.shape[0]:
            return state
        f = features(state.observed.tolist())
        a_inv = np.linalg.inv(state.strength * np.eye(f.shape[1]) + f.T @ f)
        return state._replace(a_inv=(a_inv + a_inv.T) / 2, observed=None, strength=0.0)

    def update(self, stats: Stats, f: np.ndarray, targets: np.ndarray, priors: np.ndarray,
               evidence: np.ndarray) -> Stats:
        """One observation (row i of ``f``, ``targets``) for each user (row i of ``stats``); the
        evidence is in A already. A state given by its observations gets ``f`` written into its
        ``past`` (in place: ``Stats.of`` made room for it)."""
        assert stats.b is not None, "RLS needs states made by RLS.start"
        b = stats.b + targets[:, None] * f
        if stats.a_inv is None:
            return self._observed(stats, f, b)
        a_f = np.matmul(stats.a_inv, f[:, :, None])[:, :, 0]
        scale = 1.0 / (1.0 + np.einsum("ni,ni->n", f, a_f))
        # The n×d×d arrays dominate: one for the result, written in place, no temporaries.
        a_inv = np.multiply((a_f * scale[:, None])[:, :, None], a_f[:, None, :])
        np.subtract(stats.a_inv, a_inv, out=a_inv)
        return Stats(np.matmul(a_inv, b[:, :, None])[:, :, 0].astype(np.float32), a_inv, b)

    @staticmethod
    def _observed(stats: Stats, f: np.ndarray, b: np.ndarray) -> Stats:
        """w = A⁻¹ b by Woodbury, for users whose A is given by their observations."""
        assert stats.past is not None and stats.length is not None and stats.strength is not None
        past, s = stats.past, stats.strength
        rows = np.arange(len(f))
        past[rows, stats.length] = f
        length = stats.length + 1
        w = np.empty_like(b)
        # Users padded to a multiple of four observations (zero rows change nothing): a few
        # vectorized solves, none much larger than its users need.
        room = np.minimum(-(-length // 4) * 4, past.shape[1])
        for size in np.unique(room):
            at = np.flatnonzero(room == size)
            some = past[at, :size]
            gram = np.matmul(some, some.transpose(0, 2, 1))
            gram[:, np.arange(size), np.arange(size)] += s[at, None]
            x = np.linalg.solve(gram, np.matmul(some, b[at, :, None]))
            w[at] = (b[at] - np.matmul(some.transpose(0, 2, 1), x)[:, :, 0]) / s[at, None]
        return Stats(w.astype(np.float32), None, b, s, past, length)
