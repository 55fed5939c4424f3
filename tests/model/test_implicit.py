"""The implicit rule against Hu, Koren and Volinsky's closed-form user solve, given the item factors."""

from __future__ import annotations

import numpy as np
import pytest

from velox.model import implicit_als
from velox.model.implicit import Implicit
from velox.model.learner import Event, Learner, make_rule
from velox.model.top_k import top_k
from velox.model.version import ModelVersion, random_version
from velox.schemas import user_state
from velox.schemas.user_state import UserState

D = 6


def closed_form(version: ModelVersion, interactions: list[tuple[int, float, float]], l2: float) -> np.ndarray:
    """w = (YᵀY + Yᵀ(C − I)Y + λI)⁻¹ YᵀCp over every item of the version, from (item, preference,
    confidence) interactions: an item's confidences summed, c = 1 + their sum."""
    y = np.hstack([version.item_factors.astype(np.float64), np.ones((len(version.item_ids), 1))])
    c, p = np.ones(len(y)), np.zeros(len(y))
    for item, preference, confidence in interactions:
        c[item] += confidence
        p[item] = max(p[item], preference)
    return np.linalg.solve(y.T @ (c[:, None] * y) + l2 * np.eye(y.shape[1]), y.T @ (c * p))


def interactions(seed: int, n: int, users: int, items: int) -> list[tuple[int, int, float, float]]:
    """(user, item, preference, confidence): views, clicks and purchases, items repeated; items
    ``items - 3`` and above only dismissed."""
    rng = np.random.default_rng(seed)
    kinds = [(1.0, 1.0), (1.0, 4.0), (1.0, 20.0)]
    found = []
    for _ in range(n):
        user = int(rng.integers(users))
        if rng.random() < 0.1:
            found.append((user, int(rng.integers(items - 3, items)), 0.0, 4.0))
        else:
            found.append((user, int(rng.integers(items - 3) // 2), *kinds[rng.integers(3)]))
    return found


@pytest.mark.parametrize(("seed", "n", "batch"), [(0, 3, 1), (1, 12, 5), (2, 60, 4), (3, 60, 60), (4, 40, 1)])
def test_the_online_update_equals_the_closed_form_solve_in_both_record_forms(seed: int, n: int, batch: int) -> None:
    """Few interactions (a record of items) and many (a record of A⁻¹), in batches with repeated
    users and items, each batch's records written and read back."""
    version = random_version(30, D, seed=seed)
    learner = Learner(version, Implicit(l2=0.5))
    found = interactions(seed, n, 3, 30)
    states: dict[bytes, UserState] = {}
    forms = set()
    for start in range(0, n, batch):
        events = [Event(str(u).encode(), u, item, p, start + k, c)
                  for k, (u, item, p, c) in enumerate(found[start:start + batch])]
        new, _ = learner.observe_many(states, events)
        states.update((key, user_state.decode(user_state.encode(state))) for key, state in new.items())
        forms |= {state.a_inv is None for state in states.values()}
    assert forms == ({True, False} if n > 3 * D and batch < D else {True})  # (in one batch: its rows, then A)
    for key, state in states.items():
        mine = [(item, p, c) for u, item, p, c in found if str(u).encode() == key]
        np.testing.assert_allclose(state.w, closed_form(version, mine, 0.5), atol=1e-6)
        if state.a_inv is None:
            assert len(state.observed) == len({item for item, _, _ in mine})  # one row per item
            assert sorted(state.weights.tolist()) == sorted(
                sum(c for i, _, c in mine if i == item) for item in {i for i, _, _ in mine})


def test_one_event_at_a_time_equals_the_batch() -> None:
    version = random_version(30, D, seed=5)
    learner = Learner(version, make_rule("implicit", l2=2.0))
    found = interactions(5, 30, 1, 30)
    state = None
    for offset, (user, item, p, c) in enumerate(found):
        state, _ = learner.observe(state, user, item, p, offset, c)
    batch, _ = learner.observe_many({}, [Event(b"0", 0, item, p, k, c) for k, (_, item, p, c) in enumerate(found)])
    np.testing.assert_allclose(state.w, batch[b"0"].w, atol=1e-6)
    np.testing.assert_allclose(state.w, closed_form(version, [(i, p, c) for _, i, p, c in found], 2.0), atol=1e-6)


def test_a_trained_user_starts_from_their_vector_and_moves_towards_what_they_clicked() -> None:
    base = random_version(30, D, seed=6)
    trained = np.full((1, D), 0.1, np.float32)
    version = ModelVersion("v", 0.0, base.item_ids, base.item_factors, base.item_bias, np.array([7]), trained,
                           np.array([40]))
    learner = Learner(version, make_rule("implicit"))
    before = float(version.score(trained[0], 3))
    state, predicted = learner.observe(None, 7, 3, 1.0, 0, 20.0)
    assert predicted == pytest.approx(before, abs=1e-6)
    assert version.score(state.w, 3) > before


def test_exclude_seen_holds_past_a_thousand_items() -> None:
    """A heavy user's every interaction stays out of their top-k: the first purchases too."""
    version = random_version(1_500, D, seed=7)
    learner = Learner(version, make_rule("implicit"))
    states: dict[bytes, UserState] = {}
    for start in range(0, 1_300, 400):
        new, _ = learner.observe_many(states, [Event(b"0", 0, item, 1.0, item, 20.0)
                                               for item in range(start, min(start + 400, 1_300))])
        states = {key: user_state.decode(user_state.encode(state)) for key, state in new.items()}
    seen = states[b"0"].seen
    assert sorted(seen.tolist()) == list(range(1_300))
    best = top_k(version, states[b"0"].w, 1_000, exclude=seen)
    assert len(best.items) == 200 and min(best.items) == 1_300


def test_the_batch_fit_ends_at_each_users_exact_solve_given_the_versions_items() -> None:
    """What the online rule solves from: a trained vector is the closed form of its user's interactions."""
    found = interactions(8, 300, 20, 40)
    users, items, preference, confidence = (np.array(column) for column in zip(*found))
    fitted = implicit_als.fit(users, items, preference, confidence, rank=D - 1, l2=0.5, iterations=3)
    version = ModelVersion("v", 0.0, fitted.item_ids, fitted.item_factors, np.zeros(len(fitted.item_ids), np.float32),
                           fitted.user_ids, fitted.user_vectors, fitted.user_counts)
    rows = {int(item): row for row, item in enumerate(fitted.item_ids)}
    for row, user in enumerate(fitted.user_ids.tolist()):
        mine = [(rows[i], p, c) for u, i, p, c in found if u == user]
        np.testing.assert_allclose(fitted.user_vectors[row], closed_form(version, mine, 0.5), atol=1e-5)
        assert fitted.user_counts[row] == len({i for i, _, _ in mine})


def test_a_trained_user_continues_the_fits_solve_over_all_their_interactions() -> None:
    """On a version that keeps its training interactions, a trained user's vector is the exact solve
    of them (the fit ended with the users); after more, online, it is the exact solve of all of them,
    in either record form, through a version file's round trip."""
    found = interactions(9, 400, 60, 40)
    training, online = found[:300], found[300:]
    users, items, preference, confidence = (np.array(column) for column in zip(*training))
    fitted = implicit_als.fit(users, items, preference, confidence, rank=D - 1, l2=0.5, iterations=3)
    version = ModelVersion.from_npz(ModelVersion(
        "v", 0.0, fitted.item_ids, fitted.item_factors, np.zeros(len(fitted.item_ids), np.float32), fitted.user_ids,
        fitted.user_vectors, fitted.user_counts, interactions=fitted.interactions).to_npz())
    learner = Learner(version, Implicit(l2=0.5))
    rows = {int(item): row for row, item in enumerate(version.item_ids)}
    states: dict[bytes, UserState] = {}
    for start in range(0, len(online), 7):
        events = [Event(str(u).encode(), u, item, p, start + k, c)
                  for k, (u, item, p, c) in enumerate(online[start:start + 7]) if item in rows]
        new, _ = learner.observe_many(states, events)
        states.update((key, user_state.decode(user_state.encode(state))) for key, state in new.items())
    assert {state.a_inv is None for state in states.values()} == {True, False}
    for key, state in states.items():
        user = int(key)
        mine = [(rows[i], p, c) for u, i, p, c in found if u == user and i in rows]
        np.testing.assert_allclose(state.w, closed_form(version, mine, 0.5), atol=1e-5)
