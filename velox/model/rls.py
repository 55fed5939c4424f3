"""Exact ridge regression on one user's observations, kept incrementally: O(d²) per observation.

After observations (fᵢ, rᵢ) the weights are the closed-form ridge solution centred on the prior
w₀ (Velox, Eq. 2, with a prior):

    w = (Σ fᵢ fᵢᵀ + λ I)⁻¹ (Σ rᵢ fᵢ + λ w₀)

kept as A⁻¹ and b. Each observation is a rank-one update of A, so Sherman–Morrison gives the new
inverse without solving anything:

    A⁻¹ ← A⁻¹ − (A⁻¹ f)(A⁻¹ f)ᵀ / (1 + fᵀ A⁻¹ f),    b ← b + r f,    w = A⁻¹ b

r is the observed score minus the global mean and the item's bias. Parameter: ``l2`` (λ).

>>> import numpy as np
>>> rule = RLS(l2=1.0)
>>> state = rule.start("v1", np.zeros(2, dtype=np.float32))
>>> after = rule.update(state, np.array([1.0, 0.0]), 3.0, np.zeros(2), offset=0)
>>> after.w.tolist()
[1.5, 0.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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

    def update(self, state: UserState, f: np.ndarray, target: float, prior: np.ndarray, offset: int) -> UserState:
        assert state.a_inv is not None and state.b is not None, "RLS needs a state made by RLS.start"
        a_f = state.a_inv @ f
        a_inv = state.a_inv - np.outer(a_f, a_f) / (1.0 + f @ a_f)
        b = state.b + target * f
        return UserState(state.version, (a_inv @ b).astype(np.float32), state.count + 1, offset, a_inv, b)
