"""Online SGD on one user's weights, the default update rule: O(d) per observation.

    w ← w + η ((r − w·f) f − λ (w − w₀))

r is the observed score minus the global mean and the item's bias, f the item's features and
w₀ the user's prior from the active version (their trained vector, or the mean user). Pulling
towards w₀ rather than 0 keeps a few noisy observations from undoing what the batch fit knew.
The step is taken in float64 and stored in float32, one row (user) at a time or many at once.

Parameters: ``learning_rate`` (η) and ``l2`` (λ).

>>> import numpy as np
>>> rule = SGD(learning_rate=0.1, l2=0.0)
>>> state = rule.start("v1", np.zeros(2, dtype=np.float32))
>>> after = rule.update(Stats(state.w[None]), np.array([[1.0, 1.0]]), np.array([2.0]), np.zeros((1, 2)))
>>> after.w.tolist()
[[0.20000000298023224, 0.20000000298023224]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from velox.model.stats import Stats
from velox.schemas.user_state import UserState


@dataclass(frozen=True)
class SGD:
    learning_rate: float = 0.02
    l2: float = 0.01
    name = "sgd"

    def start(self, version: str, prior: np.ndarray) -> UserState:
        return UserState(version, np.array(prior, dtype=np.float32))

    def update(self, stats: Stats, f: np.ndarray, targets: np.ndarray, priors: np.ndarray) -> Stats:
        """One observation (row i of ``f``, ``targets``) for each user (row i of ``stats``, ``priors``)."""
        w = stats.w.astype(np.float64)
        error = targets - np.einsum("ij,ij->i", w, f)
        w += self.learning_rate * (error[:, None] * f - self.l2 * (w - priors))
        return Stats(w.astype(np.float32))
