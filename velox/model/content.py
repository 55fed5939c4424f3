"""The content model: an item's factors and bias from what it is, learned at each retrain from the
items the version trained on (Velox's computational feature function, beside the materialized one
that a version's item table is).

    t̂_x = [V̂_x, b̂_x] = c + z_x W,        z_x = (φ(x)[used] − m) / s

φ is the feature function (``velox.model.item_features``), ``used`` the columns some trained item
has a value in, m and s their means and standard deviations over the trained items, c the trained
items' mean row of T = [V, b], and

    W = argmin_W  Σ_x ‖t_x − c − z_x W‖² + λ ‖W‖²  =  (ZᵀZ + λI)⁻¹ Zᵀ (T − c)

the linear attribute-to-feature mapping of Gantner et al. ("Learning Attribute-to-Feature Mappings
for Cold-Start Recommendations", ICDM 2010), fitted by ridge least squares. λ is the one of ``L2``
with the least leave-one-out error, in closed form from one SVD of Z = U S Vᵀ: the hat matrix's
diagonal h_x = Σ_j U²_xj s²_j / (s²_j + λ), a row's left-out residual e_x / (1 − h_x). The error is
measured as answers are: an item's score is μ + w[-1] + q · t_x with q = [w[:-1], 1], so a row's
residual e weighs e Q eᵀ, Q the users' mean of q qᵀ: the squared error of an average user's
rating of it. (All outputs share Z and λ, so W does not depend on Q; only the choice of λ does.)

Gantner et al. also map by the k nearest trained items in attribute space; on MovieLens's genres
and years that did no better than this linear map (measured on the split ``velox evaluate --items``
makes), which is one product per item where k-NN searches every trained item, so this one is kept.
An item the version did not train on but whose attributes are known is served with t̂_x
(``velox.serving.item_content``); an item it trained on keeps its own factors. bench/README.md
has what the mapping recovers on MovieLens (``velox evaluate --items``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from velox.model.item_features import Sparse, resolve

L2 = tuple(10.0 ** e for e in np.arange(-1.0, 5.01, 0.5))  # λ tried (on standardised columns)
MIN_ITEMS = 2  # trained items with attributes needed to learn anything


@dataclass(frozen=True, eq=False)
class ContentModel:
    function: str  # the feature function's entry point, "" for the default (velox.model.item_features)
    columns: np.ndarray  # int64[p]: the columns of φ used
    mean: np.ndarray  # float64[p]: m
    scale: np.ndarray  # float64[p]: s (1 for a constant column)
    weights: np.ndarray  # float32[p, d]: W
    intercept: np.ndarray  # float32[d]: c
    l2: float  # λ chosen
    loo_rmse: float  # its leave-one-out error, as a rating's (see the module)

    def map(self, attributes: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """Each item's mapped factors (float32[n, d − 1]) and bias (float32[n])."""
        if not attributes:
            d = len(self.intercept)
            return np.zeros((0, d - 1), np.float32), np.zeros(0, np.float32)
        z = (Sparse(resolve(self.function), attributes).dense(self.columns) - self.mean) / self.scale
        t = (self.intercept + z @ self.weights.astype(np.float64)).astype(np.float32)
        return np.ascontiguousarray(t[:, :-1]), np.ascontiguousarray(t[:, -1])

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The model as named arrays, saved in the version's ``.npz``."""
        return {"content_function": np.array(self.function), "content_columns": self.columns,
                "content_mean": self.mean, "content_scale": self.scale, "content_weights": self.weights,
                "content_intercept": self.intercept, "content_l2": np.array([self.l2, self.loo_rmse])}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> ContentModel | None:
        if "content_weights" not in arrays:
            return None
        l2, loo = arrays["content_l2"].tolist()
        return cls(str(arrays["content_function"]), arrays["content_columns"], arrays["content_mean"],
                   arrays["content_scale"], arrays["content_weights"], arrays["content_intercept"], l2, loo)


def fit(function: str, attributes: Sequence[Mapping[str, Any]], targets: np.ndarray,
        user_vectors: np.ndarray) -> ContentModel:
    """The content model of items with ``attributes`` and trained rows ``targets`` ([V_x, b_x], one
    per item), λ chosen for users like ``user_vectors`` (see the module)."""
    vectors = Sparse(resolve(function), attributes)
    columns = vectors.used()
    x = vectors.dense(columns)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    t = np.asarray(targets, np.float64)
    intercept = t.mean(axis=0)
    centred = t - intercept
    q = np.hstack([user_vectors[:, :-1], np.ones((len(user_vectors), 1))]) if len(user_vectors) else np.eye(t.shape[1])
    metric = q.T @ q / len(q)
    u, s, vt = np.linalg.svd(z, full_matrices=False)
    projected = u.T @ centred  # (r, d)
    best: tuple[float, float] | None = None
    for l2 in L2:
        shrink = s**2 / (s**2 + l2)
        residual = centred - u @ (shrink[:, None] * projected)
        left_out = residual / (1.0 - np.einsum("ij,j,ij->i", u, shrink, u))[:, None]
        error = float(np.mean(np.einsum("ij,jk,ik->i", left_out, metric, left_out)))
        if best is None or error < best[1]:
            best = (l2, error)
    assert best is not None
    l2 = best[0]
    weights = vt.T @ ((s / (s**2 + l2))[:, None] * projected)
    return ContentModel(function, columns, mean, scale, weights.astype(np.float32), intercept.astype(np.float32),
                        l2, float(np.sqrt(best[1])))


def learn(item_ids: np.ndarray, targets: np.ndarray, user_vectors: np.ndarray,
          attributes: Mapping[int, Mapping[str, Any]], function: str) -> ContentModel | None:
    """The content model of a version's trained items (``item_ids``, rows ``targets``) that have
    ``attributes`` (by item code); None when fewer than ``MIN_ITEMS`` have."""
    rows = [row for row, code in enumerate(item_ids.tolist()) if code in attributes]
    if len(rows) < MIN_ITEMS:
        return None
    return fit(function, [attributes[int(code)] for code in item_ids[rows]], targets[rows], user_vectors)
