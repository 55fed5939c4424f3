"""Online SGD on one user's weights, the default update rule: O(d) per observation.

    w ← w + η_u ((r − w·f) f − λ (w − w₀)),    η_u = η / (1 + n_u / n₀)

r is the observed score minus the global mean and the item's bias, f the item's features and
w₀ the user's prior from the active version (their trained vector, or the mean user). Pulling
towards w₀ rather than 0 keeps a few noisy observations from undoing what the batch fit knew.

n_u is the evidence behind the weights before this observation: the user's ratings in the
version's training set plus those applied online since. The step is the per-user 1/n schedule
of stochastic approximation (Robbins and Monro, 1951), offset by what the batch fit saw: a user
the version learned from 500 ratings moves a small fraction of what a newcomer moves, so a few
noisy ratings cannot carry them away, and a newcomer's step shrinks as their own evidence
grows. n₀ (``evidence``) is the evidence at which the step has halved; n₀ = ∞ is a constant step.
The step is taken in float64 and stored in float32, one row (user) at a time or many at once.

Parameters: ``learning_rate`` (η), ``l2`` (λ) and ``evidence`` (n₀).

>>> import numpy as np
>>> rule = SGD(learning_rate=0.1, l2=0.0, evidence=2.0)
>>> state = rule.start("v1", np.zeros(2, dtype=np.float32), 0)
>>> f, r, w0 = np.array([[1.0, 1.0]]), np.array([2.0]), np.zeros((1, 2))
>>> rule.update(Stats(state.w[None]), f, r, w0, np.array([0])).w[0].astype(float).round(4).tolist()
[0.2, 0.2]
>>> rule.update(Stats(state.w[None]), f, r, w0, np.array([2])).w[0].astype(float).round(4).tolist()  # half the step
[0.1, 0.1]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from velox.model.stats import Stats
from velox.schemas.user_state import UserState


@dataclass(frozen=True)
class SGD:
    # The defaults are the setting ``velox evaluate`` chose most often in bench/accuracy.py's table.
    learning_rate: float = 0.1
    l2: float = 0.0
    evidence: float = 100.0
    name = "sgd"

    def start(self, version: str, prior: np.ndarray, trained: int) -> UserState:
        return UserState(version, np.array(prior, dtype=np.float32), count=trained)

    def resume(self, state: UserState, features: Callable[[Sequence[int]], np.ndarray]) -> UserState:
        return state

    def update(self, stats: Stats, f: np.ndarray, targets: np.ndarray, priors: np.ndarray,
               evidence: np.ndarray) -> Stats:
        """One observation (row i of ``f``, ``targets``) for each user (row i of ``stats``, ``priors``),
        with ``evidence[i]`` observations behind the user's weights."""
        w = stats.w.astype(np.float64)
        error = targets - np.einsum("ij,ij->i", w, f)
        step = self.learning_rate / (1.0 + evidence / self.evidence)
        w += step[:, None] * (error[:, None] * f - self.l2 * (w - priors))
        return Stats(w.astype(np.float32))
