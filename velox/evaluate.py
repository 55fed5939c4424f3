"""``velox evaluate``: Velox's accuracy experiment, run through the real pipeline on a MovieLens file.

1. Order the ratings by event time (ratings with the same timestamp in a seeded random order:
   a timestamp says nothing about their order, and the seed makes the run repeatable).
2. The earliest half trains the first version: produced to ``observations``, then the Spark
   retrain job (no holdout) trains, saves and announces it.
3. Of each user's later ratings, the first 70% are the stream, the last 30% the test set.
4. Per update rule (``sgd``, ``rls``): the learning rate and regularisation with the lowest
   prequential error on the stream (predict, then learn, in-process with ``Learner``), among
   the settings that do not make the first version's users worse on the stream. The test set
   is never looked at to choose.
5. Per rule, a worker (``velox worker``, a child process) starts where a worker that had seen
   the earliest half would be, on the first version; the stream is produced to Kafka and the
   worker applies it; its RocksDB states score the test set.
6. A full retrain (the same Spark job) on everything before the test set.

Test RMSE of (a) the first version's static scores, (b) the worker's online states, (c) the full
retrain; and the share of the (a)−(c) gap that (b) recovers, overall, for users the first
version knew and for new users. Each rule runs in its own namespace (topics, worker group) and
data folder: the rls namespace gets the same earliest half in the same order, so the first
version's training-end offsets hold there too.
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

from velox import kafka, processes, topics, versions
from velox.batch.job import WarmJob
from velox.batch.train import TrainParams
from velox.broker import throwaway_broker
from velox.errors import VeloxError
from velox.load import produce, read_movielens
from velox.model.batch_scores import predict_many
from velox.model.learner import Event, Learner, make_rule
from velox.model.store import ModelStore
from velox.model.version import ModelVersion
from velox.schemas import partitioning, user_state
from velox.schemas.model_version import VersionInfo
from velox.schemas.observation import Observation
from velox.schemas.user_state import table_path
from velox.settings import Settings
from velox.streams.store import PartitionStore

log = logging.getLogger("velox.evaluate")

FIRST_SHARE = 0.5  # of all ratings, by event time: the first version's training set
STREAM_SHARE = 0.7  # of each user's later ratings: streamed; the rest is the test set
RULES = ("sgd", "rls")
GROUPS = ("overall", "known", "new")
# (learning rate, l2) tried per rule; rls has no learning rate.
GRID: dict[str, tuple[tuple[float, float], ...]] = {
    "sgd": tuple((rate, l2) for rate in (0.01, 0.02, 0.05, 0.1, 0.2) for l2 in (0.0, 0.01, 0.1)),
    "rls": tuple((0.0, l2) for l2 in (1.0, 3.0, 5.0, 10.0, 20.0, 50.0)),
}
CURVE_CHUNKS = 20
WORKER_TIMEOUT = 600.0


@dataclass(frozen=True)
class Split:
    """The three parts of the ratings; ``stream`` in event-time order."""

    first: list[Observation]
    stream: list[Observation]
    test: list[Observation]


def split(ratings: Sequence[Observation], seed: int) -> Split:
    """The earliest half; then each user's later ratings: the first 70% streamed, the last 30% tested."""
    tiebreak = np.random.default_rng(seed).permutation(len(ratings))
    ordered = [ratings[i] for i in np.lexsort((tiebreak, [r.time for r in ratings]))]
    cut = math.floor(FIRST_SHARE * len(ordered))
    later: dict[int, list[int]] = {}
    for position in range(cut, len(ordered)):
        later.setdefault(ordered[position].user, []).append(position)
    streamed = {p for positions in later.values() for p in positions[:math.floor(STREAM_SHARE * len(positions) + 1e-9)]}
    return Split(
        first=ordered[:cut],
        stream=[ordered[p] for p in range(cut, len(ordered)) if p in streamed],
        test=[ordered[p] for p in range(cut, len(ordered)) if p not in streamed],
    )


@dataclass(frozen=True)
class Replay:
    """Each user's weights after the stream, and the prequential error (observed − predicted) per event."""

    vectors: dict[int, np.ndarray]
    errors: np.ndarray


def replay(version: ModelVersion, rule: str, learning_rate: float, l2: float, stream: Sequence[Observation]) -> Replay:
    """The stream through ``Learner.observe_many`` in this process: exactly what the worker does."""
    learner = Learner(version, make_rule(rule, learning_rate, l2))
    states, predicted = learner.observe_many(
        {}, [Event(seen.key, seen.user, seen.item, seen.score, offset) for offset, seen in enumerate(stream)])
    scores = np.array([seen.score for seen in stream])
    return Replay({int(key): state.w for key, state in states.items()}, scores - np.array(predicted, float))


@dataclass(frozen=True)
class Trial:
    rule: str
    learning_rate: float
    l2: float
    prequential_rmse: float
    known_prequential_rmse: float | None


def choose(version: ModelVersion, rule: str, stream: Sequence[Observation]) -> tuple[Trial, list[Trial]]:
    """The grid point with the lowest prequential RMSE that keeps known users at least as good as no updates.

    "No updates" is the first version's static error on the same events: measured on the stream, so
    the test set plays no part. If no grid point keeps known users as good, the lowest overall wins.
    """
    known = known_mask(version, stream)
    static = observed(stream) - predict_many(version, *pairs(stream))
    static_known = rmse(static[known])
    trials = []
    for learning_rate, l2 in GRID[rule]:
        errors = replay(version, rule, learning_rate, l2, stream).errors
        trials.append(Trial(rule, learning_rate, l2, rmse(errors), rmse(errors[known])))
        log.info("prequential %s rate %g l2 %g: RMSE %.4f (known users %s, static %s)", rule, learning_rate, l2,
                 trials[-1].prequential_rmse, _fmt(trials[-1].known_prequential_rmse), _fmt(static_known))
    safe = [t for t in trials if static_known is None or (t.known_prequential_rmse or 0.0) <= static_known]
    return min(safe or trials, key=lambda t: t.prequential_rmse), trials


def pairs(ratings: Sequence[Observation]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([r.user for r in ratings], np.int64), np.array([r.item for r in ratings], np.int64)


def observed(ratings: Sequence[Observation]) -> np.ndarray:
    return np.array([r.score for r in ratings], np.float64)


def known_mask(version: ModelVersion, ratings: Sequence[Observation]) -> np.ndarray:
    """Which ratings are by users the version was trained on."""
    return np.array([version.knows_user(r.user) for r in ratings], bool)


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
    same weight replayed in-process (the worker applies ``Learner.observe``, so it should be ~0).
    """

    path: str
    seed: int
    counts: dict[str, int]
    rmse: dict[str, dict[str, float | None]]
    recovery: dict[str, dict[str, float | None]]
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
        for rule, trial in self.chosen.items():
            shares = "".join(f"{_percent(self.recovery[rule][g]):>10}" for g in GROUPS)
            lines.append(f"{f'gap (a)-(c) recovered by {rule}':<34}{shares}   "
                         f"(rate {trial.learning_rate:g}, l2 {trial.l2:g}; prequential RMSE {trial.prequential_rmse:.4f})")
        return "\n".join(lines)


def evaluate(settings: Settings, path: Path, seed: int = 0, params: TrainParams | None = None,
             master: str = "local[*]", spark_conf: Mapping[str, str] | None = None) -> Result:
    """The experiment on ``path`` against the broker in ``settings``; files go under ``settings.data``."""
    started = time.monotonic()
    params = params or TrainParams(seed=seed)
    parts = split(read_movielens(path), seed)
    log.info("%s: %d ratings; %d train the first version, %d streamed, %d tested", path,
             len(parts.first) + len(parts.stream) + len(parts.test), len(parts.first), len(parts.stream), len(parts.test))
    runs = _runs(settings, seed)
    store = ModelStore(runs["sgd"].model_store)
    for run in runs.values():
        topics.ensure(run)
        produce(run, parts.first, total=len(parts.first))
    job = WarmJob(runs["sgd"], params, master, spark_conf)
    try:
        first_info = job("evaluate: first version, earliest half")
        first = store.load(first_info.id)
        _activate_beside(runs["rls"], first_info, parts.first)
        chosen: dict[str, Trial] = {}
        trials: list[Trial] = []
        states: dict[str, dict[int, user_state.UserState]] = {}
        for rule, run in runs.items():
            chosen[rule], tried = choose(first, rule, parts.stream)
            trials += tried
            log.info("chosen for %s by prequential RMSE: rate %g, l2 %g", rule, chosen[rule].learning_rate,
                     chosen[rule].l2)
            states[rule] = online(run.replace(learning_rate=chosen[rule].learning_rate, l2=chosen[rule].l2),
                                  first_info, parts.stream)
        full_info = job("evaluate: full retrain, everything before the test set")
    finally:
        job.close()
    full = store.load(full_info.id)
    result = _result(path, seed, parts, first, full, full_info, chosen, trials, states, params)
    return replace(result, seconds=time.monotonic() - started)


def isolated(settings: Settings, path: Path, seed: int = 0, master: str = "local[*]") -> Result:
    """The experiment on a throwaway broker and scratch folder, so it touches no running system."""
    with tempfile.TemporaryDirectory(prefix="velox-evaluate-") as scratch, \
            throwaway_broker(settings.replace(data=Path(scratch))) as private:
        return evaluate(private, path, seed, master=master)


def _runs(settings: Settings, seed: int) -> dict[str, Settings]:
    """Per rule: its own topics, worker group and data folder; one model store for both."""
    token = uuid.uuid4().hex[:8]
    root = settings.data / f"evaluate-{token}"
    return {rule: settings.replace(
        namespace=f"{settings.namespace}evaluate-{token}-{rule}-", data=root / rule, models=str(root / "models"),
        training_log=None, holdout=0.0, rule=rule, seed=seed, worker_metrics_port=0,
    ) for rule in RULES}


def _activate_beside(run: Settings, info: VersionInfo, first: Sequence[Observation]) -> None:
    """Announce the first version in another rule's namespace, whose topic holds the same earliest half.

    The version's training end must be where the earliest half ends in this topic too: each
    partition's count of those events (offsets start at 0 in a new topic).
    """
    counts = Counter(partitioning.home(seen.key, run.partitions) for seen in first)
    ends = {p: counts[p] for p in range(run.partitions)}
    if ends != info.training_end:
        raise VeloxError(f"the first version's training end {info.training_end} is not where the earliest half "
                         f"ends in {run.topic('observations')} ({ends})")
    versions.activate(run, info.id, reason="evaluate: first version, earliest half")


def online(run: Settings, first: VersionInfo, stream: Sequence[Observation]) -> dict[int, user_state.UserState]:
    """A worker on the first version applies the stream from Kafka; its user states once it has committed all.

    The worker's group starts at the first version's training end, as a worker that had kept up
    with the earliest half would: the swap to the first version then replays nothing.
    """
    _start_group_at(run, first.training_end)
    with _worker(run) as worker:
        produce(run, stream, total=len(stream))
        _wait_caught_up(run, worker)
    return _worker_states(run)


def _start_group_at(run: Settings, offsets: Mapping[int, int]) -> None:
    topic = run.topic("observations")
    group = kafka.consumer(run, group=run.app_id)
    try:
        group.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        group.close()


@contextmanager
def _worker(run: Settings) -> Iterator[subprocess.Popen[bytes]]:
    """``velox worker`` as a child process with these settings, stopped (SIGTERM) on the way out."""
    worker = processes.spawn(run, run.data / "worker.log", "worker")
    log.info("worker (%s, rate %g, l2 %s) started, pid %d, log %s", run.rule, run.learning_rate, run.l2, worker.pid,
             run.data / "worker.log")
    try:
        yield worker
    finally:
        processes.stop(worker)


def _wait_caught_up(run: Settings, worker: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + WORKER_TIMEOUT
    while kafka.lag(run, run.app_id, run.topic("observations")) > 0:
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
            states.update((int(key), user_state.decode(value)) for key, value in store.records())
        finally:
            store.close()
    return states


def _result(path: Path, seed: int, parts: Split, first: ModelVersion, full: ModelVersion, full_info: VersionInfo,
            chosen: Mapping[str, Trial], trials: list[Trial], states: Mapping[str, Mapping[int, user_state.UserState]],
            params: TrainParams) -> Result:
    known = known_mask(first, parts.test)
    truth, test_pairs = observed(parts.test), pairs(parts.test)
    errors = {"a": truth - predict_many(first, *test_pairs), "c": truth - predict_many(full, *test_pairs)}
    static_stream = observed(parts.stream) - predict_many(first, *pairs(parts.stream))
    curves, gaps, applied = {"a": curve(static_stream)}, {}, {}
    for rule, trial in chosen.items():
        worker = {user: state.w for user, state in states[rule].items()}
        errors[f"b-{rule}"] = online_errors(first, worker, parts.test)
        replayed = replay(first, rule, trial.learning_rate, trial.l2, parts.stream)
        curves[f"b-{rule}"] = curve(replayed.errors)
        gaps[rule] = max((float(np.max(np.abs(worker[u] - w))) for u, w in replayed.vectors.items()), default=0.0)
        applied[f"applied_online_{rule}"] = sum(s.count for s in states[rule].values()) - int(first.user_counts.sum())
    rmses = {system: by_group(e, known) for system, e in errors.items()}
    return Result(
        path=str(path), seed=seed,
        counts={"ratings": len(parts.first) + len(parts.stream) + len(parts.test), "first": len(parts.first),
                "stream": len(parts.stream), "test": len(parts.test), "test_known": int(known.sum()),
                "test_new": int((~known).sum()), "full_training_rows": full_info.training_rows, **applied},
        rmse=rmses,
        recovery={rule: {g: recovered(rmses["a"][g], rmses[f"b-{rule}"][g], rmses["c"][g]) for g in GROUPS}
                  for rule in chosen},
        chosen=dict(chosen), trials=trials, stream_rmse=curves, worker_vs_replay=gaps,
        versions={"first": first.id, "full": full.id}, train_params=asdict(params),
    )


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
