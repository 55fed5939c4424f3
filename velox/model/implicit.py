"""Implicit-feedback ALS's exact user solve, applied online: one interaction at a time, given the
version's item factors.

Hu, Koren and Volinsky (ICDM 2008, "Collaborative Filtering for Implicit Feedback Datasets",
Eq. 3-4) fit a user's vector to their preferences p_ui (1 for an interaction, 0 for every other
item) weighted by confidences c_ui (1 for every item, 1 + r_ui for an item with interactions of
total confidence r_ui). Given the item factors Y (the version's features f = [V, 1] as rows), the
user's vector is

    w_u = (YᵀY + Yᵀ(C_u − I)Y + λI)⁻¹ YᵀC_u p_u

and YᵀY, the same for every user, is computed once per version (``given``): a user's solve needs
only their own interactions, the rows where C_u − I and p_u are not zero. He, Zhang, Kan and Chua
(SIGIR 2016, "Fast Matrix Factorization for Online Recommendation with Implicit Feedback", §4.3)
update a user online by the same objective with the item factors held; this rule does their
user step exactly (a closed-form solve, not their coordinate descent's sweep), with the
version's Gramian as the shared prior P = YᵀY + λI:

    A = P + Σₑ cₑ fₑ fₑᵀ,    b = P w₀ + Σₑ cₑ tₑ fₑ,    w = A⁻¹ b

over the user's interactions e on the version, each of confidence cₑ (its kind's, summed over
repeated interactions with an item: Σₑ cₑ fₑ fₑᵀ = Yᵀ(C_u − I)Y). The target tₑ makes Σ cₑ tₑ fₑ
= YᵀC_u p_u: a positive interaction's is 1, plus 1/cₑ on the item's first interaction (the
preference's own weight 1 in c_ui = 1 + r_ui; ``velox.model.learner`` says which is first); a
negative kind's ("dismiss") is 0, preference 0 with its confidence.

A user the version was trained on starts from their training interactions, which an implicit
version keeps (``velox.model.implicit_als``): their items and confidences in A, YᵀC_u p_u over
them in b, w₀ = 0. Their vector is then the version's (the fit's last step solved exactly this),
and after new interactions it is the exact solve over all of them, as a retrain's user step on the
same items would give. Any other user starts centred on w₀, the mean user (0 for a version
without users, where w is Hu, Koren and Volinsky's solve exactly), or on the trained vector of a
version that keeps no interactions, P then standing for its precision.

A is kept in one of two exact forms, as ``velox.model.rls`` keeps its own: while a user has fewer
distinct items than dimensions d, by the items and their summed confidences (the record stores
them; A⁻¹ b by Woodbury with the shared P⁻¹, a system of m unknowns: with G the items' features
and C their confidences, A⁻¹ v = P⁻¹v − P⁻¹Gᵀ(C⁻¹ + G P⁻¹ Gᵀ)⁻¹ G P⁻¹ v); from the d-th on, by
A⁻¹ itself, each interaction a rank-one Sherman–Morrison update:

    A⁻¹ ← A⁻¹ − c (A⁻¹ f)(A⁻¹ f)ᵀ / (1 + c fᵀ A⁻¹ f)

Nothing is forgotten: an interaction is evidence of a preference, not a noisy rating of one.

>>> import numpy as np
>>> from velox.model.version import random_version
>>> rule = Implicit(l2=1.0).given(random_version(5, 3, seed=1))
>>> state = rule.start("v1", np.zeros(3, dtype=np.float32), 0)
>>> stats = Stats.of(state, features=lambda items: np.zeros((len(items), 3)), room=1)
>>> f = np.array([[0.0, 0.0, 1.0]])
>>> float(rule.update(stats, f, np.array([1.25]), np.zeros((1, 3)), np.array([0]), np.array([4.0])).w[0, 2]) > 0
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from velox.model.stats import Stats, padded_groups
from velox.model.version import ModelVersion
from velox.schemas.user_state import NO_ITEMS, UserState

NO_WEIGHTS = np.zeros(0, np.float64)  # read-only: no interactions yet
NO_WEIGHTS.flags.writeable = False


@dataclass(frozen=True)
class Implicit:
    l2: float = 1.0  # λ
    prior: np.ndarray | None = field(default=None, repr=False)  # P = YᵀY + λI of the version given
    prior_inv: np.ndarray | None = field(default=None, repr=False)
    version: ModelVersion | None = field(default=None, repr=False)
    name = "implicit"

    def given(self, version: ModelVersion) -> Implicit:
        """The rule on ``version``'s item factors: P = YᵀY + λI, once per version."""
        v = version.item_factors.astype(np.float64)
        d = version.d
        prior = np.empty((d, d))
        prior[:-1, :-1] = v.T @ v
        prior[:-1, -1] = prior[-1, :-1] = v.sum(axis=0)
        prior[-1, -1] = len(v)
        prior[np.arange(d), np.arange(d)] += self.l2
        prior_inv = np.linalg.inv(prior)
        return replace(self, prior=prior, prior_inv=(prior_inv + prior_inv.T) / 2, version=version)

    def start(self, version: str, prior: np.ndarray, trained: int,
              interactions: tuple[np.ndarray, np.ndarray] | None = None) -> UserState:
        """The user's state before their first interaction on the version: centred on ``prior``, or,
        given their training ``interactions`` (items, signed summed confidences: the version keeps
        them), those interactions themselves, b = YᵀC_u p_u over them."""
        assert self.prior is not None and self.version is not None, "an Implicit rule is given its version first"
        w = np.array(prior, dtype=np.float32)
        if interactions is None or not len(interactions[0]):
            return UserState(version, w, count=trained, b=self.prior @ prior.astype(np.float64), observed=NO_ITEMS,
                             weights=NO_WEIGHTS)
        items, signed = interactions
        f = self.version.features_many(items.tolist())[0]
        b = ((1.0 + np.abs(signed)) * (signed > 0)) @ f
        return UserState(version, w, count=trained, b=b, observed=np.asarray(items, np.int64),
                         weights=np.abs(signed).astype(np.float64))

    def resume(self, state: UserState, features: Callable[[Sequence[int]], np.ndarray]) -> UserState:
        """``state`` in the form its next update takes: A⁻¹ itself once the user has d distinct items."""
        if state.observed is None or len(state.observed) < state.w.shape[0]:
            return state
        assert self.prior is not None and state.weights is not None
        g = features(state.observed.tolist())
        a_inv = np.linalg.inv(self.prior + (g * state.weights[:, None]).T @ g)
        return state._replace(a_inv=(a_inv + a_inv.T) / 2, observed=None, weights=None)

    def update(self, stats: Stats, f: np.ndarray, targets: np.ndarray, priors: np.ndarray,
               evidence: np.ndarray, confidence: np.ndarray) -> Stats:
        """One interaction (row i of ``f``, ``targets``, ``confidence``) for each user (row i of
        ``stats``); w₀ is in b already. A state given by its items gets ``f`` and its confidence
        written into its ``past`` and ``weights`` (in place: ``Stats.of`` made room for them)."""
        assert stats.b is not None, "Implicit needs states made by Implicit.start"
        b = stats.b + (confidence * targets)[:, None] * f
        if stats.a_inv is None:
            return self._observed(stats, f, confidence, b)
        a_f = np.matmul(stats.a_inv, f[:, :, None])[:, :, 0]
        scale = confidence / (1.0 + confidence * np.einsum("ni,ni->n", f, a_f))
        a_inv = np.multiply((a_f * scale[:, None])[:, :, None], a_f[:, None, :])
        np.subtract(stats.a_inv, a_inv, out=a_inv)
        return Stats(np.matmul(a_inv, b[:, :, None])[:, :, 0].astype(np.float32), a_inv, b)

    def _observed(self, stats: Stats, f: np.ndarray, confidence: np.ndarray, b: np.ndarray) -> Stats:
        """w = A⁻¹ b for users whose A is given by their interactions: by Woodbury while they are
        fewer than d rows, else (more than d in one batch) by A itself."""
        assert stats.past is not None and stats.length is not None and stats.weights is not None
        assert self.prior is not None and self.prior_inv is not None
        past, weights = stats.past, stats.weights
        rows = np.arange(len(f))
        past[rows, stats.length] = f
        weights[rows, stats.length] = confidence
        length = stats.length + 1
        d = f.shape[1]
        w = np.empty_like(b)
        for size, at in padded_groups(length, past.shape[1]):
            g, c = past[at, :size], weights[at, :size]
            if size >= d:
                a = self.prior + np.matmul(g.transpose(0, 2, 1) * c[:, None, :], g)
                w[at] = np.linalg.solve(a, b[at, :, None])[:, :, 0]
                continue
            p_b = b[at] @ self.prior_inv  # P⁻¹ b (P symmetric)
            g_p = g @ self.prior_inv  # G P⁻¹
            inner = np.matmul(g_p, g.transpose(0, 2, 1))
            inner[:, np.arange(size), np.arange(size)] += np.where(c > 0, 1.0 / np.where(c > 0, c, 1.0), 1.0)
            x = np.linalg.solve(inner, np.matmul(g_p, b[at, :, None]))
            w[at] = p_b - np.matmul(g_p.transpose(0, 2, 1), x)[:, :, 0]
        return Stats(w.astype(np.float32), None, b, None, past, length, weights)
