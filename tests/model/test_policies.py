"""Model selection policies on a simulated stream: one model's predictions are clearly worse."""

from __future__ import annotations

import numpy as np
import pytest

from velox.model.policies import Arms, Policy, choose, learn, probabilities, reward_of

GOOD, BAD = 0.5, 1.5  # error standard deviations of the two models' predictions (rating points)


def simulate(policy: Policy, rounds: int, seed: int = 0) -> list[int]:
    """The model chosen at each round, learning from each reward as it comes."""
    rng = np.random.default_rng(seed)
    arms = Arms.start(["als", "popularity"])
    chosen = []
    for _ in range(rounds):
        arm, propensity = choose(policy, arms, rng)
        error = rng.normal(0, GOOD if arm == 0 else BAD)
        learn(policy, arms, arm, propensity, reward_of(error))
        chosen.append(arm)
    return chosen


@pytest.mark.parametrize(("kind", "rounds"), [("exp3", 1500), ("thompson", 300)])
def test_bandits_route_at_least_90_percent_to_the_better_model(kind: str, rounds: int) -> None:
    for seed in range(5):
        chosen = simulate(Policy(kind), rounds + 500, seed)
        late = chosen[rounds:]  # after the stated number of observations
        assert late.count(0) / len(late) >= 0.9, (kind, seed, late.count(0) / len(late))


def test_fixed_and_ab_do_not_learn() -> None:
    assert set(simulate(Policy("fixed"), 300)) == {0}
    chosen = simulate(Policy("ab", weights=(0.2, 0.8)), 4000)
    assert chosen.count(1) / len(chosen) == pytest.approx(0.8, abs=0.03)


def test_epsilon_greedy_exploits_but_keeps_exploring() -> None:
    chosen = simulate(Policy("epsilon", epsilon=0.2), 3000)[500:]
    assert chosen.count(0) / len(chosen) == pytest.approx(0.9, abs=0.03)  # 1 − ε + ε/2


@pytest.mark.parametrize("kind", ["fixed", "ab", "epsilon", "exp3", "thompson"])
def test_propensities_are_probabilities_and_exp3_never_starves_a_model(kind: str) -> None:
    rng = np.random.default_rng(1)
    arms = Arms.start(["a", "b", "c"])
    for arm in range(3):
        learn(Policy(kind), arms, arm, 1 / 3, reward=[0.9, 0.1, 0.5][arm])
    p = probabilities(Policy(kind), arms, rng)
    assert p.sum() == pytest.approx(1.0) and (p >= 0).all()
    if kind == "exp3":
        assert p.min() >= 0.1 / 3


def test_an_unknown_policy_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'ucb9' is unknown"):
        Policy("ucb9")
