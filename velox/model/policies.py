"""Choosing among an application's models from feedback: fixed, weighted A/B, ε-greedy, Exp3, Thompson.

Every choice comes with its propensity (the probability the policy gave the chosen model), so
the logged decisions support offline evaluation (inverse propensity scoring). A reward is in
[0, 1], from the error of the chosen model's prediction for the score the user then gave:
``1 / (1 + error²)``.

Exp3 (Auer et al.; Clipper §5.1) keeps log-weights and mixes in γ/K uniform exploration, so
no model is ever starved and propensities stay at least γ/K. Thompson sampling keeps a Beta
posterior per model, updated with fractional rewards (α += r, β += 1 − r); its propensity is
estimated from the same posterior by sampling.

>>> arms = Arms.start(["als", "popularity"])
>>> rng = np.random.default_rng(0)
>>> for _ in range(300):
...     arm, p = choose(Policy("exp3"), arms, rng)
...     learn(Policy("exp3"), arms, arm, p, reward=0.9 if arm == 0 else 0.3)
>>> bool(probabilities(Policy("exp3"), arms, rng)[0] > 0.9)
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("fixed", "ab", "epsilon", "exp3", "thompson")


@dataclass(frozen=True)
class Policy:
    kind: str = "fixed"
    weights: tuple[float, ...] = ()  # ab: the split, in the order of the models (default: even)
    epsilon: float = 0.1  # epsilon: the share of random choices
    gamma: float = 0.1  # exp3: the share of uniform exploration (and the learning rate)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"policy {self.kind!r} is unknown; use one of {', '.join(KINDS)}")


@dataclass
class Arms:
    """What a policy has learned about each model (one per app, or per app and user)."""

    names: list[str]
    pulls: np.ndarray
    rewards: np.ndarray  # sum of rewards
    log_weights: np.ndarray  # exp3
    alpha: np.ndarray  # thompson: Beta(α, β)
    beta: np.ndarray

    @classmethod
    def start(cls, names: list[str]) -> Arms:
        k = len(names)
        return cls(list(names), np.zeros(k), np.zeros(k), np.zeros(k), np.ones(k), np.ones(k))


def probabilities(policy: Policy, arms: Arms, rng: np.random.Generator) -> np.ndarray:
    """The probability of choosing each model now."""
    k = len(arms.names)
    if policy.kind == "fixed":
        return np.eye(k)[0]
    if policy.kind == "ab":
        weights = np.array(policy.weights[:k] if len(policy.weights) >= k else [1.0] * k, float)
        return weights / weights.sum()
    if policy.kind == "epsilon":
        means = np.divide(arms.rewards, arms.pulls, out=np.full(k, np.inf), where=arms.pulls > 0)
        return (1 - policy.epsilon) * np.eye(k)[int(np.argmax(means))] + policy.epsilon / k
    if policy.kind == "exp3":
        weights = np.exp(arms.log_weights - arms.log_weights.max())
        return (1 - policy.gamma) * weights / weights.sum() + policy.gamma / k
    samples = rng.beta(arms.alpha[:, None], arms.beta[:, None], size=(k, 1000))
    return np.bincount(samples.argmax(axis=0), minlength=k) / 1000


def choose(policy: Policy, arms: Arms, rng: np.random.Generator) -> tuple[int, float]:
    """A model (its index) and the propensity of that choice."""
    if policy.kind == "thompson":
        arm = int(np.argmax(rng.beta(arms.alpha, arms.beta)))
        return arm, max(float(probabilities(policy, arms, rng)[arm]), 1e-3)
    p = probabilities(policy, arms, rng)
    arm = int(rng.choice(len(p), p=p))
    return arm, float(p[arm])


def learn(policy: Policy, arms: Arms, arm: int, propensity: float, reward: float) -> None:
    """Take in the reward the chosen model earned."""
    arms.pulls[arm] += 1
    arms.rewards[arm] += reward
    arms.alpha[arm] += reward
    arms.beta[arm] += 1 - reward
    if policy.kind == "exp3":  # importance-weighted: unbiased for every model, chosen or not
        arms.log_weights[arm] += policy.gamma * reward / (propensity * len(arms.names))


def reward_of(error: float) -> float:
    """A prediction's reward in [0, 1]: 1 when exact, 0.5 one point off, 0.2 two points off."""
    return 1.0 / (1.0 + error * error)
