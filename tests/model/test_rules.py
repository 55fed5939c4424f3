"""One contract for both update rules, plus RLS against numpy's closed-form ridge."""

from __future__ import annotations

import numpy as np
import pytest

from velox.model.learner import Learner, make_rule
from velox.model.rls import RLS
from velox.model.sgd import SGD
from velox.model.version import random_version
from velox.schemas import user_state

RULES = [SGD(learning_rate=0.05, l2=0.02), RLS(l2=0.5)]


def random_stream(seed: int, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, d))
    features[:, -1] = 1.0
    return features, rng.normal(size=n) * 2


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_update_leaves_its_inputs_unchanged(rule) -> None:
    prior = np.arange(4, dtype=np.float32)
    state = rule.start("v", prior)
    before = user_state.encode(state)
    f = np.array([1.0, -1.0, 0.5, 1.0])
    rule.update(state, f, 1.5, prior.astype(np.float64), offset=3)
    assert user_state.encode(state) == before
    assert prior.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_update_is_deterministic_and_survives_a_record_round_trip(rule) -> None:
    features, targets = random_stream(1, 30, 6)
    prior = np.zeros(6)
    direct = rule.start("v", prior)
    via_bytes = rule.start("v", prior)
    for offset, (f, r) in enumerate(zip(features, targets)):
        direct = rule.update(direct, f, r, prior, offset)
        via_bytes = user_state.decode(user_state.encode(rule.update(via_bytes, f, r, prior, offset)))
    assert np.allclose(direct.w, via_bytes.w, atol=1e-5)
    assert via_bytes.count == 30 and via_bytes.offset == 29


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_update_moves_prediction_towards_the_target(rule) -> None:
    prior = np.zeros(3)
    state = rule.start("v", prior)
    f = np.array([0.5, -0.2, 1.0])
    after = rule.update(state, f, 4.0, prior, offset=0)
    assert abs(4.0 - after.w @ f) < abs(4.0 - state.w @ f)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("l2", [0.1, 1.0, 10.0])
def test_rls_equals_closed_form_ridge_centred_on_the_prior(seed: int, l2: float) -> None:
    d, n = 11, 200
    features, targets = random_stream(seed, n, d)
    prior = np.random.default_rng(seed + 100).normal(size=d)
    rule = RLS(l2=l2)
    state = rule.start("v", prior)
    for offset, (f, r) in enumerate(zip(features, targets)):
        state = rule.update(state, f, r, prior, offset)
        if offset in (0, 5, n - 1):
            seen_f, seen_r = features[: offset + 1], targets[: offset + 1]
            expected = np.linalg.solve(seen_f.T @ seen_f + l2 * np.eye(d), seen_f.T @ seen_r + l2 * prior)
            np.testing.assert_allclose(state.w, expected, atol=1e-4)


def test_learner_skips_an_observation_at_or_below_the_applied_offset() -> None:
    learner = Learner(random_version(20, 5, seed=3), SGD())
    state, prediction = learner.observe(None, user=1, item=4, score=5.0, offset=10)
    assert prediction is not None and state.offset == 10 and state.count == 1
    for replayed in (10, 9):
        again, none = learner.observe(state, user=1, item=4, score=5.0, offset=replayed)
        assert again is state and none is None


def test_learner_cold_start_uses_the_mean_user_and_unknown_items_move_only_the_bias() -> None:
    version = random_version(20, 5, seed=3)
    learner = Learner(version, SGD(learning_rate=0.1, l2=0.0))
    state, prediction = learner.observe(None, user=7, item=999, score=2.0, offset=0)
    assert prediction == pytest.approx(version.global_mean + float(version.mean_user[-1]))
    assert np.all(state.w[:-1] == version.mean_user[:-1])
    assert state.w[-1] != version.mean_user[-1]


def test_make_rule_refuses_an_unknown_name() -> None:
    with pytest.raises(Exception, match="update rule 'adam' is unknown"):
        make_rule("adam", 0.1, 0.1)
