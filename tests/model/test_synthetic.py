"""The planted stream whose users change taste: the same first half, new scores only for those who changed."""

from __future__ import annotations

import numpy as np

from velox.model.synthetic import changed_tastes, observations, planted


def test_a_third_change_taste_halfway_and_nothing_else_changes() -> None:
    truth = planted(users=30, items=20, d=4, seed=3)
    steady = list(observations(truth, 1000, noise=0.0, seed=4))
    moving = list(observations(truth, 1000, noise=0.0, seed=4, changed=1 / 3))
    later = changed_tastes(truth, 1 / 3, seed=4)
    changed = set(np.flatnonzero((later != truth.user_vectors).any(axis=1)).tolist())
    assert len(changed) == 10
    assert moving[:500] == steady[:500]
    assert [(o.user, o.item) for o in moving] == [(o.user, o.item) for o in steady]
    differ = {o.user for o, s in zip(moving[500:], steady[500:]) if o.score != s.score}
    assert differ == changed & {o.user for o in steady[500:]}
