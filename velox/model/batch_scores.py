"""``ModelVersion.score`` for many (user, item) pairs at once, from each user's prior.

Validation, benchmarks and the item corrections score batches of pairs; a Python loop over
``score`` would dominate them. The rules are the same: an unknown user scores with the mean user
vector, an unknown item with zero factors and zero bias. Only the batch's rows are gathered
(through the version's lookups), so a batch costs the same whatever the version's users.
"""

from __future__ import annotations

import numpy as np

from velox.model.lookup import Lookup
from velox.model.version import ModelVersion


def rows(known: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The row of each id in ``known`` (any order), or ``len(known)`` where it is absent.

    Sorts ``known``: for a version's users or items, ``version.users.rows`` and ``version.items.rows``
    use the sort made once.

    >>> rows(np.array([30, 10, 20]), np.array([20, 99, 30])).tolist()
    [2, 3, 0]
    """
    return Lookup(np.asarray(known, np.int64)).rows(np.asarray(ids, np.int64))


def predict_many(version: ModelVersion, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """float64 scores of ``users[k]`` for ``items[k]``, each user at their prior (no online updates).

    >>> from velox.model.version import random_version
    >>> predict_many(random_version(3, 2, global_mean=3.5), np.array([7]), np.array([99])).tolist()
    [3.5]
    """
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    w = _gathered(version.user_vectors, version.users.rows(users), version.mean_user)
    item_rows = version.items.rows(items)
    f = _gathered(version.item_factors, item_rows, np.zeros(version.d - 1, np.float32))
    bias = _gathered(version.item_bias[:, None], item_rows, np.zeros(1, np.float32))[:, 0]
    return version.global_mean + bias + np.einsum("ij,ij->i", w[:, :-1], f) + w[:, -1]


def _gathered(table: np.ndarray, at: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """``table``'s rows ``at`` as float64, ``missing`` where a row is past the end (an unknown id)."""
    known = at < len(table)
    out = np.empty((len(at), table.shape[1]))
    out[known] = table[at[known]]
    out[~known] = missing
    return out
