"""One observation at a time: predict first (prequential error), then update the user's state.

The worker and every reference replay in the tests go through ``Learner.observe``, so "the
same state as a sequential replay" is a statement about this one function.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from velox.errors import ConfigError
from velox.model.rls import RLS
from velox.model.sgd import SGD
from velox.model.version import ModelVersion
from velox.schemas.user_state import UserState

MAX_SEEN = 1000  # seen items kept per user, for top-k's exclude_seen


class UpdateRule(Protocol):
    name: str

    def start(self, version: str, prior: np.ndarray) -> UserState: ...

    def update(self, state: UserState, f: np.ndarray, target: float, prior: np.ndarray, offset: int) -> UserState: ...


def make_rule(name: str, learning_rate: float, l2: float | None = None) -> UpdateRule:
    """The rule called ``name``; ``l2`` None keeps the rule's own default."""
    if name == "sgd":
        return SGD(learning_rate=learning_rate) if l2 is None else SGD(learning_rate=learning_rate, l2=l2)
    if name == "rls":
        return RLS() if l2 is None else RLS(l2=l2)
    raise ConfigError(f"update rule {name!r} is unknown; use 'sgd' or 'rls'")


@dataclass(frozen=True)
class Learner:
    version: ModelVersion
    rule: UpdateRule

    def observe(
        self, state: UserState | None, user: int, item: int, score: float, offset: int
    ) -> tuple[UserState, float | None]:
        """The user's new state and the score predicted before learning.

        An observation at or below the state's last applied source offset was applied already:
        the state comes back unchanged with no prediction (this is what makes replay exactly-once).
        """
        if state is not None and offset <= state.offset:
            return state, None
        prior = self.version.prior(user)
        if state is None:
            state = self.rule.start(self.version.id, prior)
        elif state.version != self.version.id:
            state = replace(self.rule.start(self.version.id, prior), count=state.count, offset=state.offset,
                            seen=state.seen)
        f, bias = self.version.features(item)
        base = self.version.global_mean + bias
        prediction = base + float(state.w @ f)
        updated = self.rule.update(state, f, score - base, prior, offset)
        return replace(updated, seen=remember(state.seen, item)), prediction


def remember(seen: np.ndarray, item: int) -> np.ndarray:
    """The user's seen items with ``item`` added (once), keeping the most recent ``MAX_SEEN``.

    >>> remember(np.array([3, 5]), 5).tolist(), remember(np.array([3, 5]), 8).tolist()
    ([3, 5], [3, 5, 8])
    """
    if item in seen:
        return seen
    return np.append(seen[-(MAX_SEEN - 1):], np.int64(item))
