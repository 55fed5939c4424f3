"""A planted split model: known θ and w_u, and observations drawn from them with Gaussian noise.

Loads of any size with a known answer: a learner that works recovers each user's w_u, so its
error on fresh (user, item) pairs falls towards the noise level. With ``changed``, a share of the
users change taste halfway through the observations (a new w_u drawn like the first): what a
version trained on the first half knows of them turns wrong, and only online updates can follow.

>>> truth = planted(users=3, items=4, d=3, seed=1)
>>> observed = list(observations(truth, 2, noise=0.0, seed=1))
>>> [round(truth.score(truth.prior(o.user), o.item), 6) == round(o.score, 6) for o in observed]
[True, True]
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from velox.model.version import ModelVersion
from velox.schemas.observation import Observation


def planted(users: int, items: int, d: int, seed: int = 0, global_mean: float = 3.0) -> ModelVersion:
    """The truth: item factors and biases, and every user's vector (last coordinate: the user's bias)."""
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(d - 1)
    return ModelVersion(
        id=f"planted-{users}x{items}x{d}-seed{seed}",
        global_mean=global_mean,
        item_ids=np.arange(items, dtype=np.int64),
        item_factors=rng.normal(0, 1.0, size=(items, d - 1)).astype(np.float32),
        item_bias=rng.normal(0, 0.3, size=items).astype(np.float32),
        user_ids=np.arange(users, dtype=np.int64),
        user_vectors=np.hstack([rng.normal(0, scale, size=(users, d - 1)), rng.normal(0, 0.3, size=(users, 1))])
        .astype(np.float32),
        user_counts=np.zeros(users, dtype=np.int64),
    )


def items_only(truth: ModelVersion) -> ModelVersion:
    """What a worker may start from: the true θ, but no user vectors (those are to be learned)."""
    return ModelVersion(
        id=truth.id.replace("planted", "planted-items"), global_mean=truth.global_mean,
        item_ids=truth.item_ids, item_factors=truth.item_factors, item_bias=truth.item_bias,
        user_ids=np.zeros(0, dtype=np.int64), user_vectors=np.zeros((0, truth.d), dtype=np.float32),
        user_counts=np.zeros(0, dtype=np.int64),
    )


def observations(truth: ModelVersion, count: int, noise: float = 0.5, seed: int = 0,
                 chunk: int = 100_000, changed: float = 0.0) -> Iterator[Observation]:
    """``count`` observations of uniformly drawn (user, item) pairs, scored by the truth plus noise;
    from observation ``count // 2`` on, a ``changed`` share of the users by their new vectors."""
    rng = np.random.default_rng(seed)
    later = changed_tastes(truth, changed, seed)
    produced = 0
    while produced < count:
        n = min(chunk, count - produced)
        users = rng.integers(0, len(truth.user_ids), n)
        items = rng.integers(0, len(truth.item_ids), n)
        f = np.hstack([truth.item_factors[items], np.ones((n, 1), dtype=np.float32)])
        vectors = np.where((produced + np.arange(n) >= count // 2)[:, None], later[users], truth.user_vectors[users])
        scores = (truth.global_mean + truth.item_bias[items] + np.einsum("ij,ij->i", vectors, f)
                  + rng.normal(0, noise, n))
        for offset, (user, item, score) in enumerate(zip(users.tolist(), items.tolist(), scores.tolist())):
            yield Observation(user=int(truth.user_ids[user]), item=int(truth.item_ids[item]), score=score,
                              time=float(produced + offset))
        produced += n


def changed_tastes(truth: ModelVersion, share: float, seed: int = 0) -> np.ndarray:
    """Every user's vector in the second half: a ``share`` of them (seeded) drawn anew like the truth's.

    >>> truth = planted(users=9, items=4, d=3, seed=1)
    >>> int((changed_tastes(truth, 1 / 3) != truth.user_vectors).any(axis=1).sum())
    3
    """
    rng = np.random.default_rng([seed, 1])
    users, d = truth.user_vectors.shape
    moved = rng.choice(users, size=round(share * users), replace=False)
    later = truth.user_vectors.copy()
    later[moved, :-1] = rng.normal(0, 1.0 / np.sqrt(d - 1), size=(len(moved), d - 1))
    later[moved, -1] = rng.normal(0, 0.3, size=len(moved))
    return later


def clustered(users: int, items: int, d: int, seed: int = 0, per_cluster: int = 1000) -> ModelVersion:
    """``planted``, its item factors drawn around ``items / per_cluster`` centres (genres, styles)
    instead of all around one: the structure trained factors of a large catalog have, which an
    approximate inner-product index relies on (bench/topk.py and velox.model.index)."""
    truth = planted(users, items, d, seed)
    rng = np.random.default_rng([seed, 2])
    centres = rng.normal(0, 1.0, size=(max(1, items // per_cluster), d - 1))
    factors = centres[rng.integers(0, len(centres), items)] + rng.normal(0, 0.5, size=(items, d - 1))
    return truth.with_items(truth.item_ids, factors.astype(np.float32), truth.item_bias)
