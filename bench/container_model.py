"""bench/containers.py's model: a scikit-learn regressor whose per-call cost dominates a one-row predict.

Fitted at import on random data (fixed seed), so the benchmark needs no data set: the same
model in the benchmark's process (in-process calls) and in the container's replicas.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor

from velox.schemas.container_rpc import Input

FEATURES = 8
_rng = np.random.default_rng(0)
_x = _rng.random((5_000, FEATURES))
regressor = HistGradientBoostingRegressor(max_iter=50, random_state=0).fit(_x, _x @ _rng.random(FEATURES))


def features(inputs: list[Input]) -> np.ndarray:
    """A row per input, from its user and item ids (any deterministic function will do)."""
    ids = np.array([[i.user, i.item] for i in inputs], np.float64)
    return np.sin(np.hstack([ids * k for k in range(1, FEATURES // 2 + 1)]))


def model(inputs: list[Input]) -> list[float]:
    return regressor.predict(features(inputs)).tolist()


PLANTED_FIXED_S, PLANTED_PER_INPUT_S = 0.003, 0.000_02


def planted(inputs: list[Input]) -> list[float]:
    time.sleep(PLANTED_FIXED_S + PLANTED_PER_INPUT_S * len(inputs))
    return [i.item / 10 for i in inputs]
