"""The cold-items experiment's own logic, on planted versions (the pipeline around it is the accuracy
experiment's: tests/experiments/test_accuracy.py)."""

from __future__ import annotations

import numpy as np

from tests.model.test_content import planted_items
from velox.batch.train import TrainParams
from velox.experiments.cold_items import cold_draw, judged
from velox.model import content
from velox.model.version import ModelVersion
from velox.schemas.observation import Observation
from velox.settings import Settings


def test_mapped_factors_recover_the_gap_where_content_decides_the_items_and_leave_trained_items_alone() -> None:
    rng = np.random.default_rng(0)
    attributes, _, rows = planted_items(300, 4)
    users = rng.normal(0, 0.5, (60, 4)).astype(np.float32)
    full = ModelVersion("full", 3.0, np.arange(300, dtype=np.int64), rows[:, :-1].astype(np.float32),
                        rows[:, -1].astype(np.float32), np.arange(60, dtype=np.int64), users, np.ones(60, np.int64))
    pairs = [(int(u), int(x)) for u, x in zip(rng.integers(0, 60, 3000), rng.integers(0, 300, 3000))]
    scores = full.global_mean + full.item_bias[[x for _, x in pairs]] + np.einsum(
        "ij,ij->i", users[[u for u, _ in pairs], :-1], full.item_factors[[x for _, x in pairs]]) + users[[u for u, _ in pairs], -1]
    ratings = [Observation(user=u, item=x, score=float(s), time=float(t)) for t, ((u, x), s) in enumerate(zip(pairs, scores))]
    cold = cold_draw(ratings, 0.2, seed=1)
    assert len(cold) == 60 and cold == cold_draw(ratings, 0.2, seed=1)
    kept = np.array([x not in cold for x in range(300)])
    by_code = dict(enumerate(attributes))
    first = ModelVersion("first", 3.0, full.item_ids[kept], full.item_factors[kept], full.item_bias[kept],
                         full.user_ids, users, full.user_counts,
                         content=content.fit("", [attributes[x] for x in np.flatnonzero(kept)], rows[kept], users))
    mapped = first.described(by_code)
    assert sorted(mapped.item_ids[len(first.item_ids):].tolist()) == sorted(cold)
    result = judged("planted", "planted", 0, 0.5, 0.2, ratings[:1000], ratings[1000:], cold, first, mapped, full,
                    Settings(), TrainParams())
    assert result.recovery["b"] > 0.9  # the planted map is linear in what the default features hold
    assert result.rmse["b"]["other"] == result.rmse["a"]["other"]
    assert [check["met"] for check in result.checks] == [True, True, True]
