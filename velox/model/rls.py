"""Exact ridge regression on one user's observations, kept incrementally: O(d²) per observation.

After observations (fᵢ, rᵢ) the weights are the closed-form ridge solution centred on the prior
w₀ (Velox, Eq. 2, with a prior):

    w = (Σ fᵢ fᵢᵀ + λ_u I)⁻¹ (Σ rᵢ fᵢ + λ_u w₀),    λ_u = λ (1 + n_u / n₀)

kept as A⁻¹ and b. Each observation is a rank-one update of A, so Sherman–Morrison gives the new
inverse without solving anything:

    A⁻¹ ← A⁻¹ − (A⁻¹ f)(A⁻¹ f)ᵀ / (1 + fᵀ A⁻¹ f),    b ← b + r f,    w = A⁻¹ b

r is the observed score minus the global mean and the item's bias. The prior's strength grows
with n_u, the user's ratings in the version's training set: Spark's ALS (ALS-WR, Zhou et al.,
2008) regularises each user in proportion to their ratings, so the precision of a trained vector
grows with the evidence behind it, and a user the version learned from 500 ratings is not carried
away by a few new ones. Online evidence needs no such term: A already counts it. n₀
(``evidence``) is the training count at which the prior's strength has doubled; n₀ = ∞ gives
every user the same λ. One row (user) at a time or many at once.

>>> import numpy as np
>>> rule = RLS(l2=1.0)
>>> state = rule.start("v1", np.zeros(2, dtype=np.float32), 0)
>>> stats = Stats(state.w[None], state.a_inv[None], state.b[None])
>>> rule.update(stats, np.array([[1.0, 0.0]]), np.array([3.0]), np.zeros((1, 2)), np.array([0])).w.tolist()
[[1.5, 0.0]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from velox.model.stats import Stats
from velox.schemas.user_state import UserState


@dataclass(frozen=True)
class RLS:
    # The defaults are the setting ``velox evaluate`` chose most often in bench/accuracy.py's table.
    l2: float = 10.0
    evidence: float = 100.0
    name = "rls"

    def start(self, version: str, prior: np.ndarray, trained: int) -> UserState:
        d, strength = prior.shape[0], self.l2 * (1.0 + trained / self.evidence)
        return UserState(
            version, np.array(prior, dtype=np.float32), count=trained,
            a_inv=np.eye(d) / strength, b=strength * prior.astype(np.float64),
        )

    def update(self, stats: Stats, f: np.ndarray, targets: np.ndarray, priors: np.ndarray,
               evidence: np.ndarray) -> Stats:
        """One observation (row i of ``f``, ``targets``) for each user (row i of ``stats``); the
        evidence is in A already."""
        assert stats.a_inv is not None and stats.b is not None, "RLS needs states made by RLS.start"
        a_f = np.matmul(stats.a_inv, f[:, :, None])[:, :, 0]
        scale = 1.0 / (1.0 + np.einsum("ni,ni->n", f, a_f))
        # The n×d×d arrays dominate: one for the result, written in place, no temporaries.
        a_inv = np.multiply((a_f * scale[:, None])[:, :, None], a_f[:, None, :])
        np.subtract(stats.a_inv, a_inv, out=a_inv)
        b = stats.b + targets[:, None] * f
        return Stats(np.matmul(a_inv, b[:, :, None])[:, :, 0].astype(np.float32), a_inv, b)
