"""Several users' weights as rows of arrays: what an update rule works on.

The worker applies a batch of events as rounds, each round one event for each of several
distinct users, so a rule updates all of a round's users in one vectorized step.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from velox.schemas.user_state import UserState


class Stats(NamedTuple):
    """Row i is one user: ``w`` scores items; ``a_inv`` and ``b`` are RLS's statistics (None for SGD)."""

    w: np.ndarray  # float32[n, d]
    a_inv: np.ndarray | None = None  # float64[n, d, d]
    b: np.ndarray | None = None  # float64[n, d]

    @classmethod
    def of(cls, *states: UserState) -> Stats:
        """The states' weights as rows, copied."""
        if states[0].a_inv is None:
            return cls(np.stack([s.w for s in states]))
        return cls(np.stack([s.w for s in states]), np.stack([s.a_inv for s in states]),
                   np.stack([s.b for s in states]))

    def state(self, row: int, start: UserState, applied: int, offset: int, seen: np.ndarray) -> UserState:
        """Row ``row`` as the state that ``start`` became after ``applied`` more observations (a
        view: ``put`` must not write that row again)."""
        return UserState(start.version, self.w[row], start.count + applied, offset,
                         None if self.a_inv is None else self.a_inv[row],
                         None if self.b is None else self.b[row], seen)

    def take(self, rows: np.ndarray) -> Stats:
        return Stats(self.w[rows], None if self.a_inv is None else self.a_inv[rows],
                     None if self.b is None else self.b[rows])

    def put(self, rows: np.ndarray, new: Stats) -> None:
        """Write ``new``'s rows at ``rows`` (distinct) in place."""
        self.w[rows] = new.w
        if self.a_inv is not None and new.a_inv is not None and self.b is not None and new.b is not None:
            self.a_inv[rows] = new.a_inv
            self.b[rows] = new.b
