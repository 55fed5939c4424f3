"""``ModelVersion.score`` for many (user, item) pairs at once, from each user's prior.

Validation and benchmarks score whole test sets; a Python loop over ``score`` would dominate them.
The rules are the same: an unknown user scores with the mean user vector, an unknown item with
zero factors and zero bias.
"""

from __future__ import annotations

import numpy as np

from velox.model.version import ModelVersion


def rows(known: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The row of each id in ``known`` (any order), or ``len(known)`` where it is absent."""
    order = np.argsort(known, kind="stable")
    # Past the end, searchsorted lands on an appended row: len(known), absent either way.
    row = np.append(order, len(known))[np.searchsorted(known[order], ids)]
    return np.where(np.append(known, 0)[row] == ids, row, len(known))


def predict_many(version: ModelVersion, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """float64 scores of ``users[k]`` for ``items[k]``, each user at their prior (no online updates).

    >>> from velox.model.version import random_version
    >>> predict_many(random_version(3, 2, global_mean=3.5), np.array([7]), np.array([99])).tolist()
    [3.5]
    """
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    # One extra row each: the mean user for unknown users, zeros for unknown items.
    w = np.vstack([version.user_vectors, version.mean_user]).astype(np.float64)[rows(version.user_ids, users)]
    f = np.vstack([version.item_factors, np.zeros(version.d - 1, np.float32)]).astype(np.float64)
    item_rows = rows(version.item_ids, items)
    bias = np.append(version.item_bias, np.float32(0)).astype(np.float64)[item_rows]
    return version.global_mean + bias + np.einsum("ij,ij->i", w[:, :-1], f[item_rows]) + w[:, -1]
