"""``velox evaluate``: the split is what the experiment says, and the real pipeline's figures hold together.

The pipeline test runs on pyspark's MovieLens sample with a third of its users moved later in
time, so the later ratings have both users the first version knew and new ones.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from velox.batch.train import TrainParams
from velox.experiments import accuracy
from velox.experiments.accuracy import Result, Split, choose, recovered, split
from velox.local.loader import PYSPARK_SAMPLE, read_movielens
from velox.model.store import ModelStore
from velox.model.synthetic import observations, planted
from velox.schemas.observation import Observation
from velox.settings import Settings

# py4j (Spark's gateway) leaves sockets for the garbage collector; nothing of ours.
pytestmark = pytest.mark.filterwarnings("ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning")


def ratings(users: int, per_user: int, seed: int) -> list[Observation]:
    """Ratings whose times repeat (as MovieLens' seconds do), in a shuffled file order."""
    rng = np.random.default_rng(seed)
    made = [Observation(user=u, item=i, score=float(rng.integers(1, 6)), time=float(rng.integers(0, 50)))
            for u in range(users) for i in range(per_user)]
    return [made[k] for k in rng.permutation(len(made))]


def test_split_keeps_every_rating_once_and_each_users_test_after_their_stream() -> None:
    given = ratings(users=40, per_user=25, seed=1)
    parts = split(given, seed=3)

    assert Counter(parts.first + parts.stream + parts.test) == Counter(given)
    assert len(parts.first) == len(given) // 2
    assert max(r.time for r in parts.first) <= min(r.time for r in parts.stream + parts.test)
    assert [r.time for r in parts.stream] == sorted(r.time for r in parts.stream)
    for user in {r.user for r in parts.stream + parts.test}:
        streamed = [r.time for r in parts.stream if r.user == user]
        tested = [r.time for r in parts.test if r.user == user]
        assert len(streamed) == int(0.7 * (len(streamed) + len(tested)))
        assert not streamed or not tested or max(streamed) <= min(tested)


def test_split_is_the_same_for_a_seed_and_orders_equal_times_by_it() -> None:
    given = ratings(users=40, per_user=25, seed=1)
    assert split(given, seed=3) == split(given, seed=3)
    assert split(given, seed=3) != split(given, seed=4)


def test_each_users_first_share_keeps_their_order() -> None:
    given = ratings(users=5, per_user=10, seed=2)
    early, late = accuracy.each_users_first(given, 0.7)
    assert Counter(early + late) == Counter(given)
    for user in range(5):
        mine = [r for r in given if r.user == user]
        assert [r for r in early if r.user == user] == mine[:7] and [r for r in late if r.user == user] == mine[7:]


def test_choice_is_repeatable_and_the_best_setting_on_the_later_ratings_that_keeps_known_users_as_good() -> None:
    """The version knows the users' old tastes, wrong since: learning helps them, and is chosen."""
    truth = planted(users=30, items=40, d=4, seed=2)
    stale = replace(truth, user_vectors=planted(users=30, items=40, d=4, seed=3).user_vectors)
    stream = list(observations(truth, 900, noise=0.3, seed=5))
    for rule in accuracy.RULES:
        chosen, trials = choose(stale, rule, stream)
        assert (chosen, trials) == choose(stale, rule, stream)
        assert len(trials) == len(accuracy.GRID[rule]) and not chosen.keep_known
        assert chosen == min((t for t in trials if t.safe), key=lambda t: t.verify_rmse)
        assert chosen.known_verify_rmse < chosen.static_known_verify_rmse


def test_when_every_setting_makes_known_users_worse_they_keep_the_version_vector() -> None:
    """The version knows the users exactly and the ratings are noisy: any step only adds noise to them."""
    truth = planted(users=30, items=40, d=4, seed=2)
    stream = list(observations(truth, 900, noise=1.5, seed=5))
    for rule in accuracy.RULES:
        chosen, trials = choose(truth, rule, stream)
        assert not any(t.safe for t in trials if not t.keep_known)
        assert chosen.keep_known and chosen.known_verify_rmse == pytest.approx(chosen.static_known_verify_rmse)


def test_recovered_is_the_share_of_the_gap_closed() -> None:
    assert recovered(1.0, 0.9, 0.8) == pytest.approx(0.5)
    assert recovered(1.0, 1.1, 0.8) == pytest.approx(-0.5)
    assert recovered(None, 0.9, 0.8) is None
    assert recovered(1.0, 0.9, 1.0) is None


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pyspark's sample as a CSV of string ids (users ``u-<n>``, items ``m-<n>``), every third user's
    ratings a second later than the rest: the whole experiment runs on ids that are not numbers."""
    path = tmp_path_factory.mktemp("evaluate") / "ratings.csv"
    path.write_text("userId,movieId,rating,timestamp\n" + "".join(
        f"u-{r.user},m-{r.item},{r.score:g},{int(r.time) + (r.user % 3 == 0)}\n" for r in read_movielens(PYSPARK_SAMPLE)))
    return path


@pytest.fixture(scope="module")
def result_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("evaluate-run")


@pytest.fixture(scope="module")
def result(settings: Settings, sample: Path, result_data: Path) -> Result:
    own = settings.replace(data=result_data, namespace=f"e{uuid.uuid4().hex[:8]}-", partitions=2)
    return accuracy.evaluate(own, read_movielens(sample), str(sample), seed=7,
                             params=TrainParams(rank=8, iterations=5, seed=7), master="local[2]")


def test_every_later_rating_is_streamed_through_the_worker_once_or_tested(result: Result, sample: Path) -> None:
    parts: Split = split(read_movielens(sample), seed=7)
    counts = result.counts
    assert (counts["first"], counts["stream"], counts["test"]) == (len(parts.first), len(parts.stream), len(parts.test))
    assert counts["ratings"] == counts["first"] + counts["stream"] + counts["test"] == 1501
    assert counts["applied_online_sgd"] == counts["applied_online_rls"] == counts["stream"]
    assert counts["full_training_rows"] == counts["first"] + counts["stream"]
    assert counts["test_known"] > 0 and counts["test_new"] > 0
    assert counts["test_known"] + counts["test_new"] == counts["test"]


def test_the_worker_holds_what_the_learner_replayed_in_process(result: Result) -> None:
    assert set(result.worker_vs_replay) == {"sgd", "rls"}
    assert all(gap < 1e-5 for gap in result.worker_vs_replay.values()), result.worker_vs_replay


def test_online_updates_and_the_full_retrain_beat_the_first_version(result: Result) -> None:
    rmse = result.rmse
    assert rmse["b-rls"]["overall"] < rmse["a"]["overall"], result.table()
    assert rmse["c"]["overall"] < rmse["a"]["overall"], result.table()
    assert rmse["b-rls"]["new"] < rmse["a"]["new"], result.table()
    assert rmse["b-rls"]["known"] <= rmse["a"]["known"] and rmse["b-sgd"]["known"] <= rmse["a"]["known"], result.table()
    assert 0 < result.recovery["rls"]["overall"] <= 1.5


def test_the_chosen_parameters_are_among_the_trials_and_the_stream_curves_cover_it(result: Result) -> None:
    for rule, chosen in result.chosen.items():
        assert chosen in [t for t in result.trials if t.rule == rule]
    assert set(result.stream_rmse) == {"a", "b-sgd", "b-rls"}
    assert all(len(points) == accuracy.CURVE_CHUNKS for points in result.stream_rmse.values())
    assert "recovered by rls" in result.table() and "known users worse than (a)" in result.table()
    assert all(0 <= share <= 1 for share in result.worse_known.values()), result.worse_known
    assert "new users on (c)'s items" in result.table() and "without item corrections" in result.table()
    assert set(result.new_on_retrained_items) == {"sgd", "rls"} and None not in result.new_on_retrained_items.values()


def test_the_item_corrections_are_what_the_worker_counted_exactly_the_stream(
        result: Result, sample: Path, result_data: Path) -> None:
    """The served estimated shrinkage is a function of every residual sum the worker published: one
    event missed or counted twice would move it. Served, the corrections are part of (b), which the users' updates alone
    (``users_only``) are not."""
    parts = split(read_movielens(sample), seed=7)
    [models] = result_data.glob("evaluate-*/models")
    first = ModelStore(str(models)).load(result.versions["first"])
    expected = accuracy.item_corrections(first, parts.stream).shrinkage(Settings().item_shrinkage_floor)
    for rule in accuracy.RULES:
        assert result.item_shrinkage[rule] == pytest.approx(expected, rel=1e-9)
        assert result.users_only[rule] is not None and result.users_only[rule] != result.recovery[rule]["overall"]


def test_the_first_version_share_must_be_a_fraction(settings: Settings) -> None:
    with pytest.raises(accuracy.VeloxError, match="between 0 and 1, got 1.5"):
        accuracy.evaluate(settings, ratings(users=4, per_user=4, seed=1), "tiny", first_fraction=1.5)


def test_on_the_retrained_items_the_rule_starts_new_users_from_the_known_users_mean_and_learns_better() -> None:
    """The first version's items are wrong and it knows half the users; the retrain's items are the truth."""
    truth = planted(users=30, items=40, d=4, seed=2)
    wrong = planted(users=30, items=40, d=4, seed=3)
    first = replace(truth, item_factors=wrong.item_factors, item_bias=wrong.item_bias, user_ids=truth.user_ids[:15],
                    user_vectors=truth.user_vectors[:15], user_counts=truth.user_counts[:15])
    stream, test = accuracy.each_users_first(list(observations(truth, 900, noise=0.3, seed=5)), 0.7)
    parts = Split(first=[], stream=stream, test=test)
    new_stream = [r for r in stream if r.user >= 15]
    new_test = [r for r in test if r.user >= 15]
    for rule in accuracy.RULES:
        trial, _ = choose(first, rule, stream)
        on_first = accuracy.online_errors(first, accuracy.replay(first, trial, new_stream).vectors, new_test)
        on_truth = accuracy.on_retrained_items(first, truth, trial, parts)
        assert len(on_truth) == len(new_test) > 0
        assert accuracy.rmse(on_truth) < 0.8 * accuracy.rmse(on_first), rule
        # Its start is the mean of the known users' vectors, not the retrain's own vector of a new user.
        fresh = accuracy.on_retrained_items(first, truth, trial, Split(first=[], stream=[], test=new_test))
        mean = truth.user_vectors[:15].mean(axis=0)
        expected = np.array([r.score for r in new_test]) - np.array([truth.score(mean, r.item) for r in new_test])
        np.testing.assert_allclose(fresh, expected, atol=1e-5)
