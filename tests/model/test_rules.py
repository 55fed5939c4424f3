"""One contract for both update rules, plus RLS against numpy's closed-form ridge, and the
learner's batches against one event at a time."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from velox.model import learner as learner_module
from velox.model import rls as rls_module
from velox.model.learner import Event, Learner, make_rule
from velox.model.rls import RLS
from velox.model.sgd import SGD
from velox.model.stats import Stats
from velox.model.version import ModelVersion, random_version
from velox.schemas import user_state
from velox.schemas.user_state import UserState

RULES = [SGD(learning_rate=0.05, l2=0.02), RLS(l2=0.5)]


def random_stream(seed: int, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, d))
    features[:, -1] = 1.0
    return features, rng.normal(size=n) * 2


def step(rule, state: UserState, f: np.ndarray, target: float, prior: np.ndarray) -> UserState:
    """One observation through an SGD rule, as a one-row batch."""
    new = rule.update(Stats.of(state), f[None], np.array([target]), np.asarray(prior, np.float64)[None],
                      np.array([state.count]))
    return UserState(state.version, new.w[0], state.count + 1, state.offset + 1)


def stream_learner(rule, features: np.ndarray, prior: np.ndarray, trained: int = 0) -> Learner:
    """A learner whose version has item i's features ``features[i]`` (the last coordinate is the
    bias one), no biases, and one user, 0, with ``prior`` trained on ``trained`` ratings."""
    version = ModelVersion("stream", 0.0, np.arange(len(features), dtype=np.int64),
                           features[:, :-1].astype(np.float32), np.zeros(len(features), np.float32),
                           np.array([0]), np.asarray(prior, np.float32)[None], np.array([trained]))
    return Learner(version, rule)


def replay(learner: Learner, targets: np.ndarray, through_records: bool = False) -> list[UserState]:
    """User 0's state after each observation of item i with target ``targets[i]``."""
    state, states = None, []
    for offset, target in enumerate(targets):
        state, _ = learner.observe(state, 0, offset, float(target), offset)
        if through_records:
            state = user_state.decode(user_state.encode(state))
        states.append(state)
    return states


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_update_leaves_its_inputs_unchanged(rule) -> None:
    features, targets = random_stream(0, 12, 4)
    learner = stream_learner(rule, features, np.arange(4))
    before = replay(learner, targets[:7])[-1]
    record = user_state.encode(before)
    learner.observe(before, 0, 7, float(targets[7]), 7)
    assert user_state.encode(before) == record
    assert learner.version.prior(0).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_update_is_deterministic_and_survives_a_record_round_trip(rule) -> None:
    features, targets = random_stream(1, 30, 6)
    learner = stream_learner(rule, features, np.zeros(6))
    direct, via_bytes = replay(learner, targets)[-1], replay(learner, targets, through_records=True)[-1]
    assert np.allclose(direct.w, via_bytes.w, atol=1e-5)
    assert via_bytes.count == 30 and via_bytes.offset == 29


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_update_moves_prediction_towards_the_target(rule) -> None:
    features = np.array([[0.5, -0.2, 1.0]])
    learner = stream_learner(rule, features, np.zeros(3))
    after, prediction = learner.observe(None, 0, 0, 4.0, 0)
    assert prediction is not None and abs(4.0 - after.w @ features[0]) < abs(4.0 - prediction)


def ridge(learner: Learner, targets: np.ndarray, strength: float, forgetting: float = 1.0) -> np.ndarray:
    """The closed-form ridge solution centred on user 0's prior over items 0.. of ``targets``, the
    prior and each observation weighted by ``forgetting`` to the power of the observations after it."""
    f, prior = learner.version.features_many(range(len(targets)))[0], learner.version.prior(0)
    m = len(targets)
    weights, fade = forgetting ** np.arange(m - 1, -1, -1), forgetting ** m
    return np.linalg.solve((f * weights[:, None]).T @ f + fade * strength * np.eye(f.shape[1]),
                           f.T @ (weights * targets) + fade * strength * prior)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("l2", [0.1, 1.0, 10.0])
@pytest.mark.parametrize("forgetting", [1.0, 0.97])
def test_rls_equals_closed_form_ridge_centred_on_the_prior_in_either_form(seed: int, l2: float,
                                                                          forgetting: float) -> None:
    """Before d observations A⁻¹ is given by the observations (Woodbury), from then on kept
    (Sherman–Morrison): the closed form in both, with or without forgetting."""
    d, n = 11, 200
    features, targets = random_stream(seed, n, d)
    learner = stream_learner(RLS(l2=l2, forgetting=forgetting), features,
                             np.random.default_rng(seed + 100).normal(size=d))
    states = replay(learner, targets)
    for offset in (0, 5, d - 1, d, n - 1):
        state = states[offset]
        np.testing.assert_allclose(state.w, ridge(learner, targets[: offset + 1], l2, forgetting), atol=1e-4)
        assert (state.a_inv is None) == (offset < d), "a state resumes in the matrix form at d observations"
        if state.observed is not None:
            assert state.observed.tolist() == list(range(offset + 1))


def test_rls_forgetting_weighs_recent_observations_more() -> None:
    """A user who rated one way and then the other ends nearer the second with β < 1."""
    d = 4
    features, _ = random_stream(3, 120, d)
    truth = np.random.default_rng(4).normal(size=(2, d))
    targets = np.concatenate([features[:60] @ truth[0], features[60:] @ truth[1]])
    distance = {}
    for forgetting in (1.0, 0.95):
        learner = stream_learner(RLS(l2=1.0, evidence=np.inf, forgetting=forgetting), features, np.zeros(d))
        distance[forgetting] = float(np.linalg.norm(replay(learner, targets)[-1].w - truth[1]))
    assert distance[0.95] < distance[1.0] / 5


def test_rls_forgetting_pauses_where_no_observation_reaches() -> None:
    """Items the version does not know move only the bias: the factors' precision would fade
    forever (A⁻¹ growing as β⁻ᵐ, then inf and nan). It stops at the windup bound instead, and the
    factors stay at the prior."""
    features, _ = random_stream(5, 2, 3)
    prior = np.array([0.5, -1.0, 0.2])
    learner = stream_learner(RLS(l2=1.0, evidence=np.inf, forgetting=0.9), features, prior)
    state = None
    for offset in range(10_000):  # item 7: unknown to the version
        state, _ = learner.observe(state, 0, 7, 3.0, offset)
    assert state is not None and state.a_inv is not None and np.isfinite(state.a_inv).all()
    assert np.trace(state.a_inv) <= 2 * rls_module.WINDUP * 3 / 1.0
    np.testing.assert_allclose(state.w[:-1], prior[:-1], atol=1e-5)
    assert abs(state.w[-1] - 3.0) < 1e-3


@pytest.mark.parametrize("trained", [0, 40, 400])
def test_rls_prior_strength_grows_with_the_training_evidence(trained: int) -> None:
    """λ_u = λ (1 + n/n₀): the closed form with that prior, for a user trained on n ratings."""
    d, l2, evidence = 6, 2.0, 20.0
    features, targets = random_stream(7, 30, d)
    learner = stream_learner(RLS(l2=l2, evidence=evidence, forgetting=1.0), features,
                             np.random.default_rng(8).normal(size=d), trained)
    states = replay(learner, targets)
    strength = l2 * (1 + trained / evidence)
    for offset in (3, 29):
        np.testing.assert_allclose(states[offset].w, ridge(learner, targets[: offset + 1], strength), atol=1e-4)


def test_sgd_step_shrinks_with_the_evidence_behind_the_user() -> None:
    """η_u = η / (1 + n/n₀): the same observations move a user with 300 training ratings far less
    than a newcomer, and a newcomer's later steps are smaller than its first."""
    rule, prior = SGD(learning_rate=0.1, l2=0.0, evidence=10.0), np.zeros(3)
    f = np.array([0.5, -0.2, 1.0])
    moved = {}
    for trained in (0, 300):
        state = rule.start("v", prior, trained)
        first = step(rule, state, f, 4.0, prior)
        moved[trained] = float(np.abs(first.w - state.w).sum())
    assert moved[300] < moved[0] / 20
    constant = SGD(learning_rate=0.1, l2=0.0, evidence=np.inf)
    assert np.allclose(step(constant, constant.start("v", prior, 300), f, 4.0, prior).w,
                       step(constant, constant.start("v", prior, 0), f, 4.0, prior).w)


def trained_version(seed: int) -> ModelVersion:
    """A random version that knows users 0-5, each trained on a few to a few hundred ratings."""
    base = random_version(60, 7, seed=seed, global_mean=3.0)
    rng = np.random.default_rng(seed)
    return replace(base, user_ids=np.arange(6, dtype=np.int64),
                   user_vectors=rng.normal(0, 0.5, (6, 7)).astype(np.float32),
                   user_counts=np.array([1, 3, 10, 30, 100, 300], np.int64))


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


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("name", ["sgd", "rls"])
@pytest.mark.parametrize(("evidence", "keep_known"), [(np.inf, False), (5.0, False), (5.0, True)])
@pytest.mark.parametrize("pass_users", [None, 5], ids=["one-pass", "passes-of-5-users"])
def test_a_batch_with_repeated_users_equals_one_event_at_a_time(name: str, seed: int, evidence: float,
                                                                 keep_known: bool, pass_users: int | None,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(seed)
    learner = Learner(trained_version(seed), make_rule(name, 0.05, 0.5, evidence), keep_known=keep_known)
    if pass_users is not None:  # a batch's users split over several passes, each user's events in one
        monkeypatch.setattr(learner_module, "PASS_BYTES", pass_users * learner._matrix_bytes)
    # Few users, so a batch holds several events of most of them; some items the version lacks.
    events = [Event(str(u).encode(), int(u), int(i), float(s), offset) for offset, (u, i, s) in enumerate(zip(
        rng.integers(0, 12, 400), rng.integers(0, 70, 400), rng.uniform(1, 5, 400)))]
    sequential: dict[bytes, UserState] = {}
    expected = []
    for e in events:
        sequential[e.key], predicted = learner.observe(sequential.get(e.key), e.user, e.item, e.score, e.offset)
        expected.append(predicted)
    batched: dict[bytes, UserState] = {}
    predictions: list[float | None] = []
    for start in range(0, len(events), 97):  # batches of uneven size, states carried between them
        new, batch = learner.observe_many(batched, events[start:start + 97])
        batched.update(new)
        predictions += batch
    np.testing.assert_allclose(np.array(predictions, float), np.array(expected, float), atol=1e-6)
    assert batched.keys() == sequential.keys()
    for key, want in sequential.items():
        got = batched[key]
        assert (got.count, got.offset, got.seen.tolist()) == (want.count, want.offset, want.seen.tolist())
        np.testing.assert_allclose(got.w, want.w, atol=1e-6)
        if want.b is not None:  # RLS: the same statistics, though a batch may change form later
            np.testing.assert_allclose(got.b, want.b, atol=1e-9)
            np.testing.assert_allclose(inverse(learner, got), inverse(learner, want), atol=1e-9)


def inverse(learner: Learner, state: UserState) -> np.ndarray:
    """RLS's A⁻¹ of ``state`` in either form."""
    assert isinstance(learner.rule, RLS)
    return learner.rule.inverse(state, lambda items: learner.version.features_many(items)[0])


def test_keep_known_holds_the_version_users_at_their_vectors_and_still_predicts() -> None:
    version = trained_version(0)
    for name in ("sgd", "rls"):
        learner = Learner(version, make_rule(name, 0.1, 0.5), keep_known=True)
        new, predictions = learner.observe_many({}, [Event(b"4", 4, 3, 5.0, 0), Event(b"9", 9, 3, 5.0, 1),
                                                     Event(b"4", 4, 8, 1.0, 2)])
        assert all(p is not None for p in predictions)
        assert np.array_equal(new[b"4"].w, version.prior(4)) and (new[b"4"].count, new[b"4"].offset) == (102, 2)
        assert new[b"4"].seen.tolist() == [3, 8]
        assert not np.array_equal(new[b"9"].w, version.prior(9)) and new[b"9"].count == 1


def test_a_user_starts_counting_their_training_observations() -> None:
    """The evidence the rules scale by: the version's count for a known user, then each event."""
    state, _ = Learner(trained_version(0), SGD()).observe(None, user=5, item=3, score=4.0, offset=0)
    assert state.count == 301


def test_a_batch_skips_what_was_applied_and_returns_untouched_states_as_they_were() -> None:
    learner = Learner(random_version(20, 5, seed=3), SGD())
    state, _ = learner.observe(None, user=1, item=3, score=2.0, offset=9)
    state, _ = learner.observe(state, user=1, item=4, score=5.0, offset=10)
    new, predictions = learner.observe_many(
        {b"1": state}, [Event(b"1", 1, 3, 2.0, 9), Event(b"1", 1, 4, 5.0, 10), Event(b"2", 2, 5, 3.0, 11)])
    assert new[b"1"] is state and predictions[:2] == [None, None] and predictions[2] is not None
    assert new[b"2"].count == 1 and new[b"2"].offset == 11


def test_events_below_the_offset_a_swap_wrote_are_not_applied_but_their_items_are_seen() -> None:
    """A swap writes a user at the version's training end; a worker behind it gets the events up
    to there later: counted by the version already, still items the user rated (top-k's
    exclude_seen), on either path."""
    learner = Learner(random_version(20, 5, seed=3), SGD())
    written = learner.rule.start(learner.version.id, np.ones(5), 12)._replace(offset=99, seen=np.array([7], np.int64))
    late = [Event(b"1", 1, 4, 5.0, 40), Event(b"1", 1, 7, 3.0, 41), Event(b"1", 1, 5, 1.0, 42)]
    new, predictions = learner.observe_many({b"1": written}, late)
    one = written
    for event in late:
        one, prediction = learner.observe(one, event.user, event.item, event.score, event.offset)
        assert prediction is None
    for state in (new[b"1"], one):
        assert state.seen.tolist() == [7, 4, 5] and (state.count, state.offset) == (written.count, 99)
        np.testing.assert_array_equal(state.w, written.w)
    assert predictions == [None, None, None]
    after, _ = learner.observe_many(new, [*late, Event(b"1", 1, 6, 2.0, 100)])
    assert after[b"1"].seen.tolist() == [7, 4, 5, 6] and after[b"1"].count == written.count + 1


@pytest.mark.parametrize("name", ["sgd", "rls"])
def test_events_delivered_again_within_one_batch_are_applied_once(name: str) -> None:
    """A consumer may deliver events again in the batch that first brought them (Faust's does
    after it seeks to the committed offsets): the batch equals its events taken once each."""
    learner = Learner(random_version(20, 5, seed=3), make_rule(name, 0.1, 0.5))
    once = [Event(b"1", 1, 4, 5.0, 7), Event(b"1", 1, 5, 3.0, 8), Event(b"2", 2, 5, 3.0, 9)]
    want, _ = learner.observe_many({}, once)
    got, predictions = learner.observe_many({}, once + once[:2] + [Event(b"1", 1, 6, 1.0, 10)])
    assert predictions[3:5] == [None, None] and predictions[5] is not None
    assert (got[b"1"].count, got[b"1"].offset, got[b"1"].seen.tolist()) == (3, 10, [4, 5, 6])
    after, _ = learner.observe_many(want, [Event(b"1", 1, 6, 1.0, 10)])
    np.testing.assert_array_equal(got[b"1"].w, after[b"1"].w)
    np.testing.assert_array_equal(got[b"2"].w, want[b"2"].w)


def test_make_rule_refuses_an_unknown_name() -> None:
    with pytest.raises(Exception, match="update rule 'adam' is unknown"):
        make_rule("adam", 0.1, 0.1)
