"""Exact ridge regression on one user's observations, kept incrementally: O(d²) per observation.

After observations (fᵢ, rᵢ) the weights are the closed-form ridge solution centred on the prior
w₀ (Velox, Eq. 2, with a prior):

    w = (Σ fᵢ fᵢᵀ + λ I)⁻¹ (Σ rᵢ fᵢ + λ w₀)

kept as A⁻¹ and b. Each observation is a rank-one update of A, so Sherman–Morrison gives the new
inverse without solving anything:

    A⁻¹ ← A⁻¹ − (A⁻¹ f)(A⁻¹ f)ᵀ / (1 + fᵀ A⁻¹ f),    b ← b + r f,    w = A⁻¹ b

r is the observed score minus the global mean and the item's bias. Parameter: ``l2`` (λ).
One row (user) at a time or many at once.

>>> import numpy as np
>>> rule = RLS(l2=1.0)
>>> state = rule.start("v1", np.zeros(2, dtype=np.float32))
>>> stats = Stats(state.w[None], state.a_inv[None], state.b[None])
>>> rule.update(stats, np.array([[1.0, 0.0]]), np.array([3.0]), np.zeros((1, 2))).w.tolist()
[[1.5, 0.0]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from velox.model.stats import Stats
from velox.schemas.user_state import UserState


@dataclass(frozen=True)
class RLS:
    l2: float = 1.0
    name = "rls"

    def start(self, version: str, prior: np.ndarray) -> UserState:
        d = prior.shape[0]
        return UserState(
            version, np.array(prior, dtype=np.float32),
            a_inv=np.eye(d) / self.l2, b=self.l2 * prior.astype(np.float64),
        )

    def update(self, stats: Stats, f: np.ndarray, targets: np.ndarray, priors: np.ndarray) -> Stats:
        """One observation (row i of ``f``, ``targets``) for each user (row i of ``stats``)."""
        assert stats.a_inv is not None and stats.b is not None, "RLS needs states made by RLS.start"
        a_f = np.matmul(stats.a_inv, f[:, :, None])[:, :, 0]
        scale = 1.0 / (1.0 + np.einsum("ni,ni->n", f, a_f))
        a_inv = stats.a_inv - (a_f * scale[:, None])[:, :, None] * a_f[:, None, :]
        b = stats.b + targets[:, None] * f
        return Stats(np.matmul(a_inv, b[:, :, None])[:, :, 0].astype(np.float32), a_inv, b)
