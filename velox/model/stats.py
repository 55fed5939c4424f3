"""Several users' weights as rows of arrays: what an update rule works on.

The worker applies a batch of events as rounds, each round one event for each of several
distinct users, so a rule updates all of a round's users in one vectorized step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import numpy as np

from velox.schemas.user_state import UserState


class Stats(NamedTuple):
    """Row i is one user: ``w`` scores items; the rest are RLS's or Implicit's statistics (None for
    SGD): ``b``, and either ``a_inv`` or the observations that give it (``past``, ``length``, and
    RLS's ``strength`` or Implicit's ``weights``)."""

    w: np.ndarray  # float32[n, d]
    a_inv: np.ndarray | None = None  # float64[n, d, d]
    b: np.ndarray | None = None  # float64[n, d]
    strength: np.ndarray | None = None  # float64[n]: the prior's strength s
    past: np.ndarray | None = None  # float64[n, room, d]: the observations' features, then zero rows
    length: np.ndarray | None = None  # int[n]: how many rows of ``past`` are observations
    weights: np.ndarray | None = None  # float64[n, room]: Implicit's confidence of each row of ``past``

    @classmethod
    def of(cls, *states: UserState, features: Callable[[Sequence[int]], np.ndarray] | None = None,
           room: int = 0) -> Stats:
        """The states' statistics as rows, copied (all in one form). States given by their
        observations need the version's ``features`` of items, and ``room`` for that many more."""
        w = np.stack([s.w for s in states])
        if states[0].b is None:
            return cls(w)
        b = np.stack([s.b for s in states])
        if states[0].a_inv is not None:
            return cls(w, np.stack([s.a_inv for s in states]), b)
        assert features is not None, "states given by their observations need the version's features"
        length = np.array([len(s.observed) for s in states])
        past = np.zeros((len(states), int(length.max()) + room, w.shape[1]))
        weighted = states[0].weights is not None
        weights = np.zeros(past.shape[:2]) if weighted else None
        if length.any():
            rows = np.repeat(np.arange(len(states)), length)
            slots = np.arange(len(rows)) - np.repeat(np.cumsum(length) - length, length)
            past[rows, slots] = features(np.concatenate([s.observed for s in states]).tolist())
            if weights is not None:
                weights[rows, slots] = np.concatenate([s.weights for s in states])
        if weighted:
            return cls(w, None, b, None, past, length, weights)
        return cls(w, None, b, np.array([s.strength for s in states]), past, length)

    def state(self, row: int, start: UserState, applied: int, offset: int, seen: np.ndarray,
              observed: Sequence[int] = (), confidences: Sequence[float] = ()) -> UserState:
        """Row ``row`` as the state that ``start`` became after ``applied`` more observations, of
        which the rule learned from ``observed`` (with ``confidences``, for Implicit: an item's
        repeated interactions summed into one) (a view: ``put`` must not write that row again)."""
        count = start.count + applied
        if self.b is None:
            return UserState(start.version, self.w[row], count, offset, seen=seen)
        if self.a_inv is not None:
            return UserState(start.version, self.w[row], count, offset, self.a_inv[row], self.b[row], seen)
        assert start.observed is not None
        items = np.concatenate([start.observed, np.asarray(observed, np.int64)]) if len(observed) else start.observed
        if self.weights is not None:
            assert start.weights is not None
            weights = start.weights
            if len(observed):
                weights = np.concatenate([weights, np.asarray(confidences, np.float64)])
                if _again(start.observed, observed):  # an item again: one row, its confidences summed
                    items, where = np.unique(items, return_inverse=True)
                    weights = np.bincount(where, weights)
            return UserState(start.version, self.w[row], count, offset, None, self.b[row], seen, items,
                             weights=weights)
        assert self.strength is not None
        return UserState(start.version, self.w[row], count, offset, None, self.b[row], seen, items,
                         float(self.strength[row]))

    def take(self, rows: np.ndarray) -> Stats:
        return Stats(*(None if field is None else field[rows] for field in self))

    def put(self, rows: np.ndarray, new: Stats) -> None:
        """Write ``new``'s rows at ``rows`` (distinct) in place."""
        for mine, theirs in zip(self, new):
            if mine is not None and theirs is not None:
                mine[rows] = theirs


def _again(before: np.ndarray, added: Sequence[int]) -> bool:
    """Whether ``added`` repeats an item of its own or of ``before`` (distinct).

    >>> _again(np.array([3, 5]), [7]), _again(np.array([3, 5]), [5]), _again(np.array([3]), [7, 7])
    (False, True, True)
    """
    distinct = set(added)
    if len(distinct) < len(added):
        return True
    if len(before) > 64:  # a long history: one vectorized scan
        return bool(np.isin(before, added).any())
    return not distinct.isdisjoint(before.tolist())  # a short one: a list and a set, no array made


def padded_groups(length: np.ndarray, capacity: int) -> Iterator[tuple[int, np.ndarray]]:
    """Users (by index) grouped by their observation rows padded to a multiple of four, at most
    ``capacity`` (zero rows change nothing): the rules' solves over a user's own rows run as a few
    vectorized ones, none much larger than its users need.

    >>> [(size, at.tolist()) for size, at in padded_groups(np.array([1, 5, 3, 9]), 8)]
    [(4, [0, 2]), (8, [1, 3])]
    """
    room = np.minimum(-(-length // 4) * 4, capacity)
    for size in np.unique(room):
        yield int(size), np.flatnonzero(room == size)
