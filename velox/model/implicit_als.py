"""Implicit-feedback ALS fit on the driver: the batch fit whose user step ``velox.model.implicit``
applies online.

Hu, Koren and Volinsky (ICDM 2008) fit user vectors w_u and item factors to preferences p_ui
(1 where u interacted with i, 0 elsewhere, every item) weighted by confidences c_ui (1 + the
summed confidence of u's interactions with i, 1 elsewhere):

    min  Σ_u Σ_i c_ui (p_ui − w_u · f_i)² + λ (Σ_u ‖w_u‖² + Σ_i ‖V_i‖²),    f_i = [V_i, 1]

The features are the version's, ``[V_i, 1]``: the last coordinate of w_u is the user's offset,
as in every version, so the online rule solves the same problem the fit did. Alternating exact
solves, each side given the other (their Eq. 4), each over only the interactions with the shared
Gramian once per pass, the users' last:

    users:  w_u = (YᵀY + Yᵀ(C_u − I)Y + λI)⁻¹ YᵀC_u p_u,    Y the items' f
    items:  V_i = (UᵀU + Uᵀ(C_i − I)U + λI)⁻¹ UᵀC_i (p_i − o),    U, o the users' factors and offsets

A negative kind's interaction ("dismiss") is preference 0 with its confidence: an item with any
positive interaction is preferred, its confidence the sum of all. The fit's interactions go with
the version (summed per user and item, negative where not preferred): the online rule continues
each trained user's solve from them.

>>> import numpy as np
>>> users, items = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 2, 0])
>>> fitted = fit(users, items, np.ones(5), np.full(5, 4.0), rank=2, l2=0.1, iterations=5)
>>> fitted.user_vectors.shape, fitted.item_factors.shape, fitted.user_counts.tolist()
((3, 3), (3, 2), [2, 2, 1])
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Fitted(NamedTuple):
    user_ids: np.ndarray  # int64, sorted
    user_vectors: np.ndarray  # float32[users, rank + 1]: [U_u, offset]
    user_counts: np.ndarray  # int64: distinct items each user interacted with
    item_ids: np.ndarray  # int64, sorted
    item_factors: np.ndarray  # float32[items, rank]
    interactions: tuple[np.ndarray, np.ndarray, np.ndarray]  # by user row: offsets, items, signed confidences


def fit(users: np.ndarray, items: np.ndarray, preference: np.ndarray, confidence: np.ndarray, rank: int,
        l2: float, iterations: int, seed: int = 0) -> Fitted:
    """Factors of the interactions (one row each; an item's repeated ones summed)."""
    user_ids, user_keys = np.unique(users, return_inverse=True)
    item_ids, item_keys = np.unique(items, return_inverse=True)
    pairs, where = np.unique(user_keys * len(item_ids) + item_keys, return_inverse=True)
    weight = np.bincount(where, confidence)  # c − 1 of each (user, item)
    preferred = np.bincount(where, preference > 0) > 0
    user_of, item_of = pairs // len(item_ids), pairs % len(item_ids)
    rng = np.random.default_rng(seed)
    factors = rng.normal(0.0, 0.1 / np.sqrt(rank), size=(len(item_ids), rank))
    by_user, by_item = _groups(user_of, len(user_ids)), _groups(item_of, len(item_ids))
    for _ in range(iterations):
        vectors = _users(factors, item_of, by_user, weight, preferred, l2)
        u, offset = vectors[:, :-1], vectors[:, -1]
        factors = _solve(u, user_of, by_item, weight, preferred, offset, l2, shift=u.T @ offset)
    # Users last: each trained vector is the exact solve given the version's items, which is what
    # the online rule solves from there.
    vectors = _users(factors, item_of, by_user, weight, preferred, l2)
    counts = np.bincount(user_of, minlength=len(user_ids))
    interactions = (np.concatenate([[0], np.cumsum(counts)]), item_ids[item_of], np.where(preferred, weight, -weight))
    return Fitted(user_ids, vectors.astype(np.float32), counts, item_ids, factors.astype(np.float32), interactions)


def _users(factors: np.ndarray, item_of: np.ndarray, by_user: list[np.ndarray], weight: np.ndarray,
           preferred: np.ndarray, l2: float) -> np.ndarray:
    y = np.hstack([factors, np.ones((len(factors), 1))])
    return _solve(y, item_of, by_user, weight, preferred, np.zeros(len(factors)), l2)


def _groups(keys: np.ndarray, n: int) -> list[np.ndarray]:
    """The rows of each key, in key order."""
    order = np.argsort(keys, kind="stable")
    return np.split(order, np.cumsum(np.bincount(keys, minlength=n))[:-1])


def _solve(other: np.ndarray, other_of: np.ndarray, groups: list[np.ndarray], weight: np.ndarray,
           preferred: np.ndarray, offset: np.ndarray, l2: float, shift: np.ndarray | None = None) -> np.ndarray:
    """One side's exact solves given the ``other`` side's rows: for each of this side's entities,
    (OᵀO + Oᵀ(C − I)O + λI)⁻¹ Oᵀ C (p − o), ``offset`` o the other side's fixed part of each
    prediction (``shift`` = Oᵀo, over all of the other side's rows)."""
    k = other.shape[1]
    gram = other.T @ other + l2 * np.eye(k)
    base = -shift if shift is not None else np.zeros(k)
    solved = np.empty((len(groups), k))
    for entity, rows in enumerate(groups):
        o = other[other_of[rows]]
        c = weight[rows]
        target = (1.0 + c) * (preferred[rows] - offset[other_of[rows]]) + offset[other_of[rows]]
        # Σ over all of the other side of c (p − o) O = −Oᵀo + Σ over the interactions of (c p − (c − 1) o − o + o) O
        solved[entity] = np.linalg.solve(gram + (o * c[:, None]).T @ o, base + o.T @ target)
    return solved
