"""Exact ridge regression on one user's observations, kept incrementally, recent ones weighing more.

After observations (fᵢ, rᵢ), i = 1..m, the weights are the closed-form ridge solution centred
on the prior w₀ (Velox, Eq. 2, with a prior), each observation and the prior weighted by the
forgetting factor β to the power of the observations that came after it:

    w = A⁻¹ b,    A = βᵐ s I + Σ βᵐ⁻ⁱ fᵢ fᵢᵀ,    b = βᵐ s w₀ + Σ βᵐ⁻ⁱ rᵢ fᵢ,
    s = λ (1 + n_u / n₀)

r is the observed score minus the global mean and the item's bias. The prior's strength s grows
with n_u, the user's ratings in the version's training set: Spark's ALS (ALS-WR, Zhou et al.,
2008) regularises each user in proportion to their ratings, so the precision of a trained vector
grows with the evidence behind it, and a user the version learned from 500 ratings is not carried
away by a few new ones. Online evidence needs no such term: A already counts it. n₀
(``evidence``) is the training count at which the prior's strength has doubled; n₀ = ∞ gives
every user the same λ.

β (``forgetting``) is exponentially weighted RLS (Haykin, *Adaptive Filter Theory*, ch. 10):
each observation multiplies A and b by β before adding its own term, so evidence a user gave
1/(1 − β) observations ago counts e⁻¹ as much as today's. Tastes drift, and the ratings to come
resemble a user's recent ones more than their first; β = 1 is plain ridge (Velox's Eq. 2). The
prior fades with the rest, so a direction no observation touches loses its precision (A⁻¹ grows
there, "windup"): the forgetting pauses for a user whose trace(A⁻¹) passes ``WINDUP`` times the
weakest prior's (d / λ), which a user whose items span the features never reaches.

A is kept in one of two exact forms. While a user has fewer observations m on the version than
dimensions d, by the observations themselves (the state stores their items; the version's
features give F, their m×d matrix, scaled to G = D F with Dᵢᵢ = β⁻ⁱᐟ², so that A = βᵐ (s I + GᵀG)),
and the Woodbury identity solves a system of m unknowns instead of d:

    A⁻¹ v = β⁻ᵐ (v − Gᵀ (s I + G Gᵀ)⁻¹ G v) / s

From the d-th observation on, by A⁻¹ itself, each observation a rank-one update of A that
Sherman–Morrison applies to the inverse in O(d²):

    A⁻¹ ← β⁻¹ A⁻¹,    A⁻¹ ← A⁻¹ − (A⁻¹ f)(A⁻¹ f)ᵀ / (1 + fᵀ A⁻¹ f)

Most users stay in the first form, where an observation adds one item id to the stored state
instead of rewriting A⁻¹'s d(d+1)/2 float64 (bytes per event: bench/stream.py). One row (user)
at a time or many at once. The form's weights come from the rule's β: a worker restarted with
another β weighs the observations a user already has in the first form by the new one.

>>> import numpy as np
>>> rule = RLS(l2=1.0, forgetting=1.0)
>>> state = rule.start("v1", np.zeros(2, dtype=np.float32), 0)
>>> stats = Stats.of(state, features=lambda items: np.zeros((len(items), 2)), room=1)
>>> rule.update(stats, np.array([[1.0, 0.0]]), np.array([3.0]), np.zeros((1, 2)), np.array([0])).w.tolist()
[[1.5, 0.0]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from velox.model.stats import Stats, padded_groups
from velox.schemas.user_state import NO_ITEMS, UserState

WINDUP = 1e3  # the forgetting pauses once trace(A⁻¹) passes this many times the weakest prior's


@dataclass(frozen=True)
class RLS:
    # The defaults are the setting ``velox evaluate`` chose most often in bench/accuracy.py's table.
    l2: float = 10.0
    evidence: float = 100.0
    forgetting: float = 0.995
    name = "rls"

    def start(self, version: str, prior: np.ndarray, trained: int) -> UserState:
        strength = self.l2 * (1.0 + trained / self.evidence)
        return UserState(version, np.array(prior, dtype=np.float32), count=trained,
                         b=strength * prior.astype(np.float64), observed=NO_ITEMS, strength=strength)

    def resume(self, state: UserState, features: Callable[[Sequence[int]], np.ndarray]) -> UserState:
        """``state`` in the form its next update takes: A⁻¹ itself once the user has d observations."""
        if state.observed is None or len(state.observed) < state.w.shape[0]:
            return state
        return state._replace(a_inv=self.inverse(state, features), observed=None, strength=0.0)

    def inverse(self, state: UserState, features: Callable[[Sequence[int]], np.ndarray]) -> np.ndarray:
        """A⁻¹ of ``state`` in either form."""
        if state.observed is None:
            assert state.a_inv is not None, "an RLS state has A⁻¹ or its observations"
            return state.a_inv
        past = features(state.observed.tolist())[None]
        a_inv = np.linalg.inv(self._matrix(past, np.array([len(state.observed)]), np.array([state.strength]))[0])
        return (a_inv + a_inv.T) / 2

    def update(self, stats: Stats, f: np.ndarray, targets: np.ndarray, priors: np.ndarray,
               evidence: np.ndarray) -> Stats:
        """One observation (row i of ``f``, ``targets``) for each user (row i of ``stats``); the
        evidence is in A already. A state given by its observations gets ``f`` written into its
        ``past`` (in place: ``Stats.of`` made room for it)."""
        assert stats.b is not None, "RLS needs states made by RLS.start"
        if stats.a_inv is None:
            return self._observed(stats, f, self.forgetting * stats.b + targets[:, None] * f)
        grow = self._growth(stats.a_inv)
        b = stats.b / grow[:, None] + targets[:, None] * f
        a_f = np.matmul(stats.a_inv, f[:, :, None])[:, :, 0] * grow[:, None]
        scale = 1.0 / (1.0 + np.einsum("ni,ni->n", f, a_f))
        # The n×d×d arrays dominate: one for the result, written in place, no temporaries.
        a_inv = np.multiply((a_f * (scale / grow)[:, None])[:, :, None], a_f[:, None, :])
        np.subtract(stats.a_inv, a_inv, out=a_inv)
        np.multiply(a_inv, grow[:, None, None], out=a_inv)
        return Stats(np.matmul(a_inv, b[:, :, None])[:, :, 0].astype(np.float32), a_inv, b)

    def _growth(self, a_inv: np.ndarray) -> np.ndarray:
        """Per user, what A⁻¹ is multiplied by before the observation (and b divided by): 1/β, or
        1 past the windup bound."""
        trace = np.einsum("nii->n", a_inv)
        return np.where(trace * self.l2 < WINDUP * a_inv.shape[1], 1.0 / self.forgetting, 1.0)

    def _observed(self, stats: Stats, f: np.ndarray, b: np.ndarray) -> Stats:
        """w = A⁻¹ b for users whose A is given by their observations: by Woodbury while they
        number fewer than d, else (more than d events of a user in one batch) by A itself."""
        assert stats.past is not None and stats.length is not None and stats.strength is not None
        past, s = stats.past, stats.strength
        rows = np.arange(len(f))
        past[rows, stats.length] = f
        length = stats.length + 1
        d = f.shape[1]
        w = np.empty_like(b)
        for size, at in padded_groups(length, past.shape[1]):
            if size >= d:
                w[at] = np.linalg.solve(self._matrix(past[at, :size], length[at], s[at]), b[at, :, None])[:, :, 0]
                continue
            some = past[at, :size] * self.forgetting ** (-np.arange(1, size + 1) / 2)[:, None]  # G = D F
            gram = np.matmul(some, some.transpose(0, 2, 1))
            gram[:, np.arange(size), np.arange(size)] += s[at, None]
            x = np.linalg.solve(gram, np.matmul(some, b[at, :, None]))
            fade = self.forgetting ** length[at]
            w[at] = (b[at] - np.matmul(some.transpose(0, 2, 1), x)[:, :, 0]) / (s[at] * fade)[:, None]
        return Stats(w.astype(np.float32), None, b, s, past, length)

    def _matrix(self, past: np.ndarray, length: np.ndarray, s: np.ndarray) -> np.ndarray:
        """A = βᵐ s I + Σ βᵐ⁻ⁱ fᵢ fᵢᵀ per user from the observations' features (then zero rows):
        weights at most 1, no β⁻ᵐ to lose precision in."""
        ages = length[:, None] - 1 - np.arange(past.shape[1])  # a zero row takes any weight
        g = past * (self.forgetting ** (np.maximum(ages, 0) / 2))[:, :, None]
        a = np.matmul(g.transpose(0, 2, 1), g)
        a[:, np.arange(a.shape[1]), np.arange(a.shape[1])] += (s * self.forgetting ** length)[:, None]
        return a
