"""``velox evaluate``: Velox's accuracy experiment, run through the real pipeline on a MovieLens file.

1. Order the ratings by event time (ratings with the same timestamp in a seeded random order:
   a timestamp says nothing about their order, and the seed makes the run repeatable).
2. The earliest share (``--first-fraction``, half by default) trains the first version:
   produced to ``observations``, then the Spark retrain job (no holdout) trains, saves and
   announces it.
3. Of each user's later ratings, the first 70% are the stream, the last 30% the test set.
4. Per update rule (``sgd``, ``rls``), the setting is chosen on the stream alone, the way the
   test will judge it: of each user's streamed ratings the first 70% are replayed (in-process,
   with ``Learner``), and the states they leave score the rest, with the item corrections those
   70% give (``velox.model.corrections``), as the edge would serve them. The setting that scores
   them best wins among those that keep the first version's users at least as good as the version
   alone on the same ratings; if none does, those users keep the version's vector
   (``keep_known``) and the best setting for the others wins. The test set is never looked at.
5. Per rule, a worker (``velox worker``, a child process) starts where a worker that had seen
   the earliest share would be, on the first version; the stream is produced to Kafka and the
   worker applies it; its RocksDB states score the test set, with the item corrections the
   worker counted and an edge serves (``velox.serving.live_corrections``).
6. A full retrain (the same Spark job) on everything before the test set.

Test RMSE of (a) the first version's static scores, (b) the worker's online states served with
the item corrections, (c) the full retrain; the share of the (a)−(c) gap that (b) recovers,
overall, for users the first version knew and for new users, and overall without the item
corrections (the users' updates alone); the share of known users whose own test RMSE (b) made
worse; and the new users' share when the chosen setting learns on (c)'s item features (what is
left to the items). Each rule runs in its own namespace (topics, worker group) and data folder: the rls namespace gets
the same earliest share in the same order, so the first version's training-end offsets hold
there too.
"""

from __future__ import annotations

import logging
import math
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from confluent_kafka import TopicPartition

from velox import processes
from velox.batch.job import WarmJob
from velox.batch.train import TrainParams
from velox.control import topics, versions
from velox.errors import VeloxError
from velox.kafka import clients, positions
from velox.local.broker import throwaway_broker
from velox.local.loader import produce
from velox.model.batch_scores import predict_many
from velox.model.corrections import ItemCorrections
from velox.model.learner import Event, Learner, make_rule
from velox.model.store import ModelStore
from velox.model.version import ModelVersion
from velox.schemas import ids, partitioning, user_state
from velox.schemas.model_version import VersionInfo
from velox.schemas.observation import Observation
from velox.serving.live_corrections import Corrections
from velox.settings import Settings
from velox.state.layout import table_path
from velox.state.partition_store import PartitionStore

log = logging.getLogger("velox.experiments.accuracy")

FIRST_SHARE = 0.5  # of all ratings, by event time: the first version's training set
STREAM_SHARE = 0.7  # of each user's later ratings: streamed, the rest tested; of the stream: tuned, the rest verifies
RULES = ("sgd", "rls")
GROUPS = ("overall", "known", "new")
EVIDENCE = (math.inf, 100.0, 30.0, 10.0)  # n₀ of velox.model.sgd and velox.model.rls; ∞: no scaling
# (learning rate, l2, evidence, forgetting) tried per rule; rls has no learning rate, sgd no forgetting.
GRID: dict[str, tuple[tuple[float, float, float, float], ...]] = {
    "sgd": tuple((rate, l2, n, 1.0) for rate in (0.02, 0.05, 0.1, 0.2, 0.5) for l2 in (0.0, 0.1) for n in EVIDENCE),
    "rls": tuple((0.0, l2, n, beta) for l2 in (5.0, 10.0, 20.0) for n in EVIDENCE[:2] for beta in (1.0, 0.995, 0.99)),
}
CURVE_CHUNKS = 20
REPLAY_BATCH = 1000  # events per observe_many, as a worker's batches: one batch of everything is slower
WORKER_TIMEOUT = 600.0


@dataclass(frozen=True)
class Split:
    """The three parts of the ratings; ``stream`` in event-time order."""

    first: list[Observation]
    stream: list[Observation]
    test: list[Observation]


def split(ratings: Sequence[Observation], seed: int, first_share: float = FIRST_SHARE) -> Split:
    """The earliest ``first_share``; then each user's later ratings: the first 70% streamed, the last 30% tested."""
    tiebreak = np.random.default_rng(seed).permutation(len(ratings))
    ordered = [ratings[i] for i in np.lexsort((tiebreak, [r.time for r in ratings]))]
    cut = math.floor(first_share * len(ordered))
    stream, test = each_users_first(ordered[cut:], STREAM_SHARE)
    return Split(first=ordered[:cut], stream=stream, test=test)


def each_users_first(ratings: Sequence[Observation], share: float) -> tuple[list[Observation], list[Observation]]:
    """Each user's first ``share`` of ``ratings`` (rounded down), and the rest; both in the given order."""
    positions: dict[int, list[int]] = {}
    for position, rating in enumerate(ratings):
        positions.setdefault(rating.user, []).append(position)
    early = {p for mine in positions.values() for p in mine[:math.floor(share * len(mine) + 1e-9)]}
    return ([r for p, r in enumerate(ratings) if p in early], [r for p, r in enumerate(ratings) if p not in early])


@dataclass(frozen=True)
class Replay:
    """Each user's weights after the stream, and the prequential error (observed − predicted) per event."""

    vectors: dict[int, np.ndarray]
    errors: np.ndarray


@dataclass(frozen=True)
class Trial:
    """One setting of a rule, and how the states it learned on each user's first 70% of the stream
    scored the rest (``verify``), beside the first version alone on the same ratings (``static``)."""

    rule: str
    learning_rate: float
    l2: float
    evidence: float
    forgetting: float
    keep_known: bool
    verify_rmse: float | None
    known_verify_rmse: float | None
    static_known_verify_rmse: float | None
    prequential_rmse: float | None  # along the tuning part: predict, then learn

    @property
    def safe(self) -> bool:
        """Whether the version's users were no worse than with the version's vectors."""
        return no_worse(self.known_verify_rmse, self.static_known_verify_rmse)


def replay(version: ModelVersion, trial: Trial, stream: Sequence[Observation]) -> Replay:
    """The stream through ``Learner.observe_many`` in this process: exactly what the worker does."""
    rule = make_rule(trial.rule, trial.learning_rate, trial.l2, trial.evidence, trial.forgetting)
    return replayed(Learner(version, rule, keep_known=trial.keep_known), stream)


def replayed(learner: Learner, stream: Sequence[Observation]) -> Replay:
    """The stream through ``learner``, a batch of ``REPLAY_BATCH`` at a time, as the worker takes them."""
    events = [Event(seen.key, seen.user_code, seen.item_code, seen.score, offset) for offset, seen in enumerate(stream)]
    states: dict[bytes, user_state.UserState] = {}
    predicted: list[float | None] = []
    for start in range(0, len(events), REPLAY_BATCH):
        new, batch = learner.observe_many(states, events[start:start + REPLAY_BATCH])
        states.update(new)
        predicted += batch
    scores = np.array([seen.score for seen in stream])
    return Replay({ids.code(key.decode()): state.w for key, state in states.items()}, scores - np.array(predicted, float))


def choose(version: ModelVersion, rule: str, stream: Sequence[Observation],
           shrinkage: float | None = None, floor: float = 0.0) -> tuple[Trial, list[Trial]]:
    """The setting whose states best score each user's last 30% of the stream, having learned the first 70%
    (served with the item corrections of those 70%, at ``shrinkage``, else estimated at least ``floor``),
    among those that keep the
    version's users no worse than the version alone there.

    This is the test's own question asked of the stream: the prequential error (predict the next
    rating, then learn it) rewards a step that chases the last few ratings, which the test, scored
    from the states at the stream's end, punishes. If no setting keeps the version's users as good,
    they keep the version's vector and the setting best for the other users wins.
    """
    tune, verify = each_users_first(stream, STREAM_SHARE)
    known = known_mask(version, verify)
    static_known = rmse((observed(verify) - predict_many(version, *pairs(verify)))[known])
    tuned = item_corrections(version, tune)
    corrections = tuned.values(pairs(verify)[1], tuned.shrinkage(floor) if shrinkage is None else shrinkage)

    def trial(learning_rate: float, l2: float, evidence: float, forgetting: float, keep_known: bool) -> Trial:
        setting = Trial(rule, learning_rate, l2, evidence, forgetting, keep_known, None, None, static_known, None)
        replayed = replay(version, setting, tune)
        errors = online_errors(version, replayed.vectors, verify) - corrections
        done = replace(setting, verify_rmse=rmse(errors), known_verify_rmse=rmse(errors[known]),
                       prequential_rmse=rmse(replayed.errors))
        log.info("%s rate %g l2 %g evidence %g forgetting %g%s: verify RMSE %s (known users %s, version alone %s)",
                 rule, learning_rate, l2, evidence, forgetting, ", known users kept" if keep_known else "",
                 _fmt(done.verify_rmse), _fmt(done.known_verify_rmse), _fmt(static_known))
        return done

    trials = [trial(*setting, False) for setting in GRID[rule]]
    safe = [t for t in trials if t.safe]
    if not safe:
        log.warning("%s: no setting kept the first version's users as good; they keep the version's vector", rule)
        safe = [trial(*setting, True) for setting in GRID[rule]]
        trials += safe
    return min(safe, key=lambda t: math.inf if t.verify_rmse is None else t.verify_rmse), trials


def item_corrections(version: ModelVersion, ratings: Sequence[Observation]) -> ItemCorrections:
    """The item corrections ``ratings`` give against ``version`` (what the edge serves after them)."""
    seen = ItemCorrections(version)
    seen.add(*pairs(ratings), observed(ratings), {r.item_code: r.item for r in ratings if r.item_code < 0})
    return seen


def no_worse(online: float | None, static: float | None) -> bool:
    """Whether an RMSE with online updates is at most the version's alone (vacuously, with no ratings)."""
    return online is None or static is None or online <= static


def pairs(ratings: Sequence[Observation]) -> tuple[np.ndarray, np.ndarray]:
    """The ratings' users and items, as the ids' codes (what a version's rows are looked up by)."""
    return np.array([r.user_code for r in ratings], np.int64), np.array([r.item_code for r in ratings], np.int64)


def observed(ratings: Sequence[Observation]) -> np.ndarray:
    return np.array([r.score for r in ratings], np.float64)


def known_mask(version: ModelVersion, ratings: Sequence[Observation]) -> np.ndarray:
    """Which ratings are by users the version was trained on."""
    return np.array([version.knows_user(r.user_code) for r in ratings], bool)


def rmse(errors: np.ndarray) -> float | None:
    """Root mean squared error; None for no errors (a group with nobody in it)."""
    return float(np.sqrt(np.mean(np.square(errors)))) if len(errors) else None


def online_errors(version: ModelVersion, vectors: Mapping[int, np.ndarray], test: Sequence[Observation]) -> np.ndarray:
    """Test errors with each user at their online weights (their prior where they have none)."""
    users, items = pairs(test)
    ids = np.unique(users)
    online = replace(
        version, id=f"{version.id}-online", user_ids=ids, user_counts=np.zeros(len(ids), np.int64),
        user_vectors=np.array([vectors.get(int(u), version.prior(int(u))) for u in ids], np.float32).reshape(len(ids), version.d),
    )
    return observed(test) - predict_many(online, users, items)


def by_group(errors: np.ndarray, known: np.ndarray) -> dict[str, float | None]:
    return {"overall": rmse(errors), "known": rmse(errors[known]), "new": rmse(errors[~known])}


def recovered(static: float | None, online: float | None, full: float | None) -> float | None:
    """The share of the gap between no updates and a full retrain that online updates close."""
    if static is None or online is None or full is None or static == full:
        return None
    return (static - online) / (static - full)


def curve(errors: np.ndarray, chunks: int = CURVE_CHUNKS) -> list[float]:
    """RMSE over consecutive equal chunks of the stream: the error along it."""
    return [float(np.sqrt(np.mean(np.square(part)))) for part in np.array_split(errors, chunks) if len(part)]

@dataclass(frozen=True)
class Result:
    """Test RMSE per system and group; ``recovery`` per rule and group; what was chosen and why.

    Systems: ``a`` the first version, no updates; ``b-sgd``, ``b-rls`` the same with the worker's
    online updates; ``c`` a full retrain on everything before the test set. ``stream_rmse`` is the
    prequential RMSE along the stream in equal chunks (for ``a``: the static error on the same
    events); ``worker_vs_replay`` the largest difference between a weight the worker holds and the
    same weight replayed in-process (both apply ``Learner.observe_many``, so it should be ~0);
    ``worse_known`` per rule, the share of the test's known users whose own RMSE is above (a)'s;
    ``users_only`` per rule, the overall recovery of the worker's states without the item
    corrections; ``item_shrinkage`` the corrections' k (estimated unless set; ∞: none);
    ``ceiling`` per rule, the best overall recovery any setting of the grid reaches on the test set
    itself (with the same corrections): no choice the system could make, but the bound on what
    choosing on the stream can find;
    ``new_on_retrained_items`` per rule, the new users' recovery when the chosen setting learns on
    (c)'s item features instead of (a)'s (``on_retrained_items``): what is left to the items.
    """

    data: str
    seed: int
    first_fraction: float
    counts: dict[str, int]
    rmse: dict[str, dict[str, float | None]]
    recovery: dict[str, dict[str, float | None]]
    worse_known: dict[str, float | None]
    users_only: dict[str, float | None]
    item_shrinkage: dict[str, float]
    ceiling: dict[str, float | None]
    new_on_retrained_items: dict[str, float | None]
    chosen: dict[str, Trial]
    trials: list[Trial]
    stream_rmse: dict[str, list[float]]
    worker_vs_replay: dict[str, float]
    versions: dict[str, str]
    train_params: dict[str, float | int]
    seconds: float = field(default=0.0, compare=False)

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def table(self) -> str:
        """The RMSE table and the recovered shares, as printed by ``velox evaluate`` and the bench."""
        names = {"a": "(a) first version, no updates", "b-sgd": "(b) online updates, sgd",
                 "b-rls": "(b) online updates, rls", "c": "(c) full retrain"}
        lines = [f"{'test RMSE':<34}" + "".join(f"{group:>10}" for group in GROUPS)]
        for system, name in names.items():
            lines.append(f"{name:<34}" + "".join(f"{_fmt(self.rmse[system][g]):>10}" for g in GROUPS))
        lines.append(f"{'ratings in the test set':<34}" + "".join(
            f"{self.counts[k]:>10,}" for k in ("test", "test_known", "test_new")))
        for rule in self.chosen:
            shares = "".join(f"{_percent(self.recovery[rule][g]):>10}" for g in GROUPS)
            lines.append(f"{f'gap (a)-(c) recovered by {rule}':<34}{shares}   "
                         f"(without item corrections: {_percent(self.users_only[rule])}; "
                         f"best setting judged on the test: {_percent(self.ceiling[rule])}; "
                         f"new users on (c)'s items: {_percent(self.new_on_retrained_items[rule])})")
        for rule, trial in self.chosen.items():
            kept = "; known users keep the version's vector" if trial.keep_known else ""
            forgetting = f", forgetting {trial.forgetting:g}" if rule == "rls" else ""
            lines.append(f"{rule}: rate {trial.learning_rate:g}, l2 {trial.l2:g}, evidence {trial.evidence:g}"
                         f"{forgetting}{kept} "
                         f"(verify RMSE {_fmt(trial.verify_rmse)}); item corrections' shrinkage "
                         f"{self.item_shrinkage[rule]:.1f}; known users worse than (a): "
                         f"{_percent(self.worse_known[rule])}")
        return "\n".join(lines)


def evaluate(settings: Settings, ratings: Sequence[Observation], data: str, seed: int = 0,
             first_fraction: float = FIRST_SHARE, params: TrainParams | None = None, master: str = "local[*]",
             spark_conf: Mapping[str, str] | None = None) -> Result:
    """The experiment on ``ratings`` (named ``data``) against the broker in ``settings``; files go
    under ``settings.data``."""
    started = time.monotonic()
    params = params or TrainParams(seed=seed)
    if not 0 < first_fraction < 1:
        raise VeloxError(f"the first version's share of the ratings must be between 0 and 1, got {first_fraction}")
    parts = split(ratings, seed, first_fraction)
    log.info("%s: %d ratings; %d train the first version, %d streamed, %d tested", data,
             len(parts.first) + len(parts.stream) + len(parts.test), len(parts.first), len(parts.stream), len(parts.test))
    runs = _runs(settings, seed)
    store = ModelStore(runs["sgd"].model_store)
    for run in runs.values():
        topics.ensure(run)
        produce(run, parts.first, total=len(parts.first))
    job = WarmJob(runs["sgd"], params, master, spark_conf)
    try:
        first_info = job(f"evaluate: first version, earliest {first_fraction:.0%}")
        first = store.load(first_info.id)
        _activate_beside(runs["rls"], first_info, parts.first)
        chosen: dict[str, Trial] = {}
        trials: list[Trial] = []
        states: dict[str, dict[int, user_state.UserState]] = {}
        served: dict[str, tuple[ModelVersion, float]] = {}
        for rule, run in runs.items():
            chosen[rule], tried = choose(first, rule, parts.stream, run.item_shrinkage, run.item_shrinkage_floor)
            trials += tried
            pick = chosen[rule]
            log.info("chosen for %s on the stream: rate %g, l2 %g, evidence %g, forgetting %g, known users %s",
                     rule, pick.learning_rate, pick.l2, pick.evidence, pick.forgetting,
                     "kept" if pick.keep_known else "learn")
            states[rule] = online(run.replace(learning_rate=pick.learning_rate, l2=pick.l2, evidence=pick.evidence,
                                              forgetting=pick.forgetting,
                                              keep_known=pick.keep_known), first_info, parts.stream)
            served[rule] = served_corrections(run, first)
        full_info = job("evaluate: full retrain, everything before the test set")
    finally:
        job.close()
    full = store.load(full_info.id)
    result = _result(data, seed, first_fraction, parts, first, full, full_info, chosen, trials, states, served, params)
    return replace(result, seconds=time.monotonic() - started)


@contextmanager
def isolated(settings: Settings) -> Iterator[Settings]:
    """Settings on a throwaway broker and scratch folder, so the experiment touches no running system."""
    with tempfile.TemporaryDirectory(prefix="velox-evaluate-") as scratch, \
            throwaway_broker(settings.replace(data=Path(scratch))) as private:
        yield private


def _runs(settings: Settings, seed: int) -> dict[str, Settings]:
    """Per rule: its own topics, worker group and data folder; one model store for both."""
    token = uuid.uuid4().hex[:8]
    root = settings.data / f"evaluate-{token}"
    return {rule: settings.replace(
        namespace=f"{settings.namespace}evaluate-{token}-{rule}-", data=root / rule, models=str(root / "models"),
        training_log=None, holdout=0.0, rule=rule, seed=seed, worker_metrics_port=0,
    ) for rule in RULES}


def _activate_beside(run: Settings, info: VersionInfo, first: Sequence[Observation]) -> None:
    """Announce the first version in another rule's namespace, whose topic holds the same earliest share.

    The version's training end must be where the earliest share ends in this topic too: each
    partition's count of those events (offsets start at 0 in a new topic).
    """
    counts = Counter(partitioning.home(seen.key, run.partitions) for seen in first)
    ends = {p: counts[p] for p in range(run.partitions)}
    if ends != info.training_end:
        raise VeloxError(f"the first version's training end {info.training_end} is not where the earliest share "
                         f"ends in {run.topic('observations')} ({ends})")
    versions.activate(run, info.id, reason="evaluate: first version, earliest share")


def online(run: Settings, first: VersionInfo, stream: Sequence[Observation]) -> dict[int, user_state.UserState]:
    """A worker on the first version applies the stream from Kafka; its user states once it has committed all.

    The worker's group starts at the first version's training end, as a worker that had kept up
    with the earliest share would: the swap to the first version then replays nothing.
    """
    _start_group_at(run, first.training_end)
    with _worker(run) as worker:
        produce(run, stream, total=len(stream))
        _wait_caught_up(run, worker)
    return _worker_states(run)


def served_corrections(run: Settings, first: ModelVersion) -> tuple[ModelVersion, float]:
    """The first version as an edge of this run serves it once the worker has applied the stream
    (its item corrections, from the totals the worker published), and their k."""
    corrections = Corrections(run)
    try:
        return corrections.served(first).version, corrections.shrinkage_served(first.id)
    finally:
        corrections.close()


def _start_group_at(run: Settings, offsets: Mapping[int, int]) -> None:
    topic = run.topic("observations")
    group = clients.consumer(run, group=run.app_id)
    try:
        group.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        group.close()


@contextmanager
def _worker(run: Settings) -> Iterator[subprocess.Popen[bytes]]:
    """``velox worker`` as a child process with these settings, stopped (SIGTERM) on the way out."""
    worker = processes.spawn(run, run.data / "worker.log", "worker")
    log.info("worker (%s%s) started, pid %d, log %s", make_rule(**run.rule_params()), ", known users kept" if run.keep_known else "",
             worker.pid, run.data / "worker.log")
    try:
        yield worker
    finally:
        processes.stop(worker)


def _wait_caught_up(run: Settings, worker: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + WORKER_TIMEOUT
    while positions.lag(run, run.app_id, run.topic("observations")) > 0:
        if worker.poll() is not None:
            raise VeloxError(f"the {run.rule} worker exited ({worker.returncode}); see {run.data / 'worker.log'}")
        if time.monotonic() > deadline:
            raise VeloxError(f"the {run.rule} worker did not catch up in {WORKER_TIMEOUT:.0f} s; see {run.data / 'worker.log'}")
        time.sleep(0.5)


def _worker_states(run: Settings) -> dict[int, user_state.UserState]:
    """Every user's record in the stopped worker's RocksDB partitions."""
    states: dict[int, user_state.UserState] = {}
    for partition in range(run.partitions):
        store = PartitionStore(table_path(run.data, partition), read_only=True)
        try:
            states.update((ids.code(key.decode()), user_state.decode(value)) for key, value in store.records())
        finally:
            store.close()
    return states


def worse_share(static: np.ndarray, online: np.ndarray, users: np.ndarray) -> float | None:
    """The share of ``users`` (one per rating) whose own RMSE is higher with ``online`` errors than with ``static``.

    >>> worse_share(np.array([1.0, 1.0, 0.5]), np.array([0.5, 0.5, 0.9]), np.array([1, 1, 2]))
    0.5
    """
    if not len(users):
        return None
    ids, rows = np.unique(users, return_inverse=True)
    squares = [np.bincount(rows, weights=np.square(e), minlength=len(ids)) for e in (static, online)]
    return float(np.mean(squares[1] > squares[0]))


def best_recovery(first: ModelVersion, trials: Sequence[Trial], parts: Split, corrections: np.ndarray,
                  static: float | None, full: float | None) -> float | None:
    """The best overall recovery among ``trials``, each replayed on the whole stream and judged on the
    test set, served with ``corrections`` (one per test rating)."""
    shares = [recovered(static, rmse(online_errors(first, replay(first, t, parts.stream).vectors, parts.test)
                                     - corrections), full) for t in trials]
    return max((share for share in shares if share is not None), default=None)


def on_retrained_items(first: ModelVersion, full: ModelVersion, trial: Trial, parts: Split) -> np.ndarray:
    """New users' test errors when ``trial`` learns their stream on the full retrain's item features,
    each starting from the mean of the first version's users there (as on the first version).

    What the rule reaches once the items are retrained: where it recovers the new users' gap on
    these items and not on the first version's, the shortfall is the items (which only a retrain
    changes, DESIGN), not the rule. The retrain's own vectors of these users are left out: they
    were fit on the test's neighbours in time and would start the rule near the answer.
    """
    known = np.isin(full.user_ids, first.user_ids)
    items = replace(full, id=f"{full.id}-items", user_ids=full.user_ids[known],
                    user_vectors=full.user_vectors[known], user_counts=full.user_counts[known])
    stream = [seen for seen in parts.stream if not first.knows_user(seen.user_code)]
    test = [seen for seen in parts.test if not first.knows_user(seen.user_code)]
    return online_errors(items, replay(items, trial, stream).vectors, test)


def _result(data: str, seed: int, first_fraction: float, parts: Split, first: ModelVersion, full: ModelVersion,
            full_info: VersionInfo, chosen: Mapping[str, Trial], trials: list[Trial],
            states: Mapping[str, Mapping[int, user_state.UserState]], served: Mapping[str, tuple[ModelVersion, float]],
            params: TrainParams) -> Result:
    known = known_mask(first, parts.test)
    truth, test_pairs = observed(parts.test), pairs(parts.test)
    errors = {"a": truth - predict_many(first, *test_pairs), "c": truth - predict_many(full, *test_pairs)}
    static_stream = observed(parts.stream) - predict_many(first, *pairs(parts.stream))
    curves, gaps, applied, users_only, corrections = {"a": curve(static_stream)}, {}, {}, {}, {}
    for rule, trial in chosen.items():
        worker = {user: state.w for user, state in states[rule].items()}
        users_only[rule] = online_errors(first, worker, parts.test)
        corrections[rule] = predict_many(served[rule][0], *test_pairs) - predict_many(first, *test_pairs)
        errors[f"b-{rule}"] = users_only[rule] - corrections[rule]
        replayed = replay(first, trial, parts.stream)
        curves[f"b-{rule}"] = curve(replayed.errors)
        gaps[rule] = max((float(np.max(np.abs(worker[u] - w))) for u, w in replayed.vectors.items()), default=0.0)
        applied[f"applied_online_{rule}"] = sum(s.count for s in states[rule].values()) - int(first.user_counts.sum())
    rmses = {system: by_group(e, known) for system, e in errors.items()}
    users = test_pairs[0][known]
    ceiling = {rule: best_recovery(first, [t for t in trials if t.rule == rule and not t.keep_known], parts,
                                   corrections[rule], rmses["a"]["overall"], rmses["c"]["overall"]) for rule in chosen}
    retrained = {rule: recovered(rmses["a"]["new"], rmse(on_retrained_items(first, full, trial, parts)), rmses["c"]["new"])
                 for rule, trial in chosen.items()}
    return Result(
        data=data, seed=seed, first_fraction=first_fraction,
        counts={"ratings": len(parts.first) + len(parts.stream) + len(parts.test), "first": len(parts.first),
                "stream": len(parts.stream), "test": len(parts.test), "test_known": int(known.sum()),
                "test_new": int((~known).sum()), "full_training_rows": full_info.training_rows, **applied},
        rmse=rmses,
        recovery={rule: {g: recovered(rmses["a"][g], rmses[f"b-{rule}"][g], rmses["c"][g]) for g in GROUPS}
                  for rule in chosen},
        worse_known={rule: worse_share(errors["a"][known], errors[f"b-{rule}"][known], users) for rule in chosen},
        users_only={rule: recovered(rmses["a"]["overall"], rmse(users_only[rule]), rmses["c"]["overall"])
                    for rule in chosen},
        item_shrinkage={rule: served[rule][1] for rule in chosen},
        ceiling=ceiling, new_on_retrained_items=retrained,
        chosen=dict(chosen), trials=trials, stream_rmse=curves, worker_vs_replay=gaps,
        versions={"first": first.id, "full": full.id}, train_params=asdict(params),
    )


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
