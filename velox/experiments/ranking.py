"""``velox evaluate --feedback implicit``: the accuracy experiment's protocol judged as a ranking.

MovieLens as implicit feedback: every rating is a view, and a rating of 4 or more is also a click
(its own event, same time). The ratings are split as ``velox.experiments.accuracy`` splits them
(the earliest share trains the first version; of each user's later ratings the first 70% are
streamed, the rest tested), each part's ratings then become its events. The test asks, per test
user, for their 10 best items, the items they had any event with before excluded; their test
clicks are what should be there: recall@10 (hits over min(10, their clicks)) and NDCG@10.

Rows, through the real pipeline on an implicit system: (a) the first version, no updates; (b) a
worker's online states after the stream (``velox.model.implicit``, its λ chosen on the stream:
each user's first 70% of it replayed in-process, the rest judged); (c) a full retrain on
everything before the test. In the same run, peers fit on (c)'s training data: popularity, and
the ``implicit`` library's ALS and BPR (a bench extra; left out if not installed), with (c)'s
factors. (c) and the peers choose their setting from a small grid on a validation split (each
user's last 30% of the stream held out of their training data), never on the test.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from velox.batch.job import WarmJob
from velox.batch.train import TrainParams
from velox.control import topics
from velox.experiments.accuracy import each_users_first, online, recovered, split
from velox.local.loader import as_interactions, produce
from velox.model import implicit_als
from velox.model.learner import Learner, event_of, make_rule
from velox.model.store import ModelStore
from velox.model.version import ModelVersion
from velox.schemas.feedback import Feedback
from velox.schemas.observation import Observation
from velox.settings import Settings

log = logging.getLogger("velox.experiments.ranking")

K = 10
LIKED = 4.0  # a rating this high is a click as well as a view
ONLINE_L2 = (0.1, 1.0, 10.0, 100.0)  # λ of the online rule, chosen on the stream
BATCH_L2 = (0.1, 1.0, 10.0, 50.0)  # λ of (c) and the implicit library's ALS, chosen on the validation split
BPR_GRID = ((0.01, 0.01), (0.05, 0.01), (0.05, 0.001))  # (learning rate, regularisation)
BPR_ITERATIONS = 100
REPLAY_BATCH = 1000

Scorer = Callable[[np.ndarray], np.ndarray]  # user codes → their scores of ``items`` (a row each)


def events_of(ratings: Sequence[Observation]) -> list[Observation]:
    return as_interactions(ratings, LIKED)


@dataclass(frozen=True)
class Judge:
    """The test: each test user's clicks, and the items they had events with before (excluded)."""

    users: np.ndarray  # codes, sorted
    relevant: list[set[int]]
    seen: dict[int, set[int]]

    @classmethod
    def of(cls, before: Sequence[Observation], test: Sequence[Observation]) -> Judge:
        clicks: dict[int, set[int]] = {}
        for r in test:
            if r.score is not None and r.score >= LIKED:
                clicks.setdefault(r.user_code, set()).add(r.item_code)
        seen: dict[int, set[int]] = {}
        for r in before:
            seen.setdefault(r.user_code, set()).add(r.item_code)
        users = np.array(sorted(clicks), np.int64)
        return cls(users, [clicks[int(u)] for u in users], seen)

    def metrics(self, items: np.ndarray, score: Scorer, among: np.ndarray | None = None) -> dict[str, float | None]:
        """Mean recall@10 and NDCG@10 over the test users (``among``: a mask of them)."""
        scores = score(self.users).astype(np.float64)
        recall, ndcg = np.zeros(len(self.users)), np.zeros(len(self.users))
        discount = 1.0 / np.log2(np.arange(2, K + 2))
        row_of = {int(item): row for row, item in enumerate(items)}
        for n, user in enumerate(self.users.tolist()):
            mine = scores[n]
            for item in self.seen.get(user, ()):
                if (row := row_of.get(item)) is not None:
                    mine[row] = -np.inf
            best = np.argpartition(-mine, K)[:K]
            best = best[np.argsort(-mine[best])]
            hits = np.array([int(items[b]) in self.relevant[n] for b in best], float)
            ideal = min(K, len(self.relevant[n]))
            recall[n] = hits.sum() / ideal
            ndcg[n] = float(hits @ discount) / float(discount[:ideal].sum())
        mask = np.ones(len(self.users), bool) if among is None else among
        if not mask.any():
            return {"recall_at_10": None, "ndcg_at_10": None}
        return {"recall_at_10": float(recall[mask].mean()), "ndcg_at_10": float(ndcg[mask].mean())}


def version_scorer(version: ModelVersion, vectors: Mapping[int, np.ndarray] | None = None) -> Scorer:
    """Scores of the version's items from each user's vector: ``vectors`` (online states), else the
    version's prior (trained vector, or the mean user)."""
    def score(users: np.ndarray) -> np.ndarray:
        w = np.array([(vectors or {}).get(int(u), version.prior(int(u))) for u in users], np.float32)
        return w[:, :-1] @ version.item_factors.T + w[:, -1:] + version.item_base[None, :]
    return score


def replay(version: ModelVersion, l2: float, stream: Sequence[Observation], feedback: Feedback) -> dict[int, np.ndarray]:
    """The online rule's weights after ``stream`` in this process (what the worker computes)."""
    learner = Learner(version, make_rule("implicit", l2=l2))
    events = [event_of(s, offset, feedback) for offset, s in enumerate(stream)]
    states: dict = {}
    for start in range(0, len(events), REPLAY_BATCH):
        new, _ = learner.observe_many(states, events[start:start + REPLAY_BATCH])
        states.update(new)
    return {event.user: states[event.key].w for event in events}


def arrays(events: Sequence[Observation], feedback: Feedback) -> tuple[np.ndarray, ...]:
    """Users, items, preferences and confidences of ``events`` (what the retrain job's log holds)."""
    targets = np.array([feedback.target(s) for s in events]).reshape(-1, 2)
    return (np.array([s.user_code for s in events], np.int64), np.array([s.item_code for s in events], np.int64),
            targets[:, 0], targets[:, 1])


def fitted_scorer(fitted: implicit_als.Fitted) -> tuple[np.ndarray, Scorer]:
    version = ModelVersion("fit", 0.0, fitted.item_ids, fitted.item_factors, np.zeros(len(fitted.item_ids), np.float32),
                           fitted.user_ids, fitted.user_vectors, fitted.user_counts)
    return version.item_ids, version_scorer(version)


def popularity(events: Sequence[Observation]) -> tuple[np.ndarray, Scorer]:
    items, counts = np.unique([s.item_code for s in events], return_counts=True)
    return items, lambda users: np.tile(counts.astype(np.float64), (len(users), 1))


def library_peers(validation_train: Sequence[Observation], train: Sequence[Observation], feedback: Feedback,
                  rank: int, iterations: int,
                  validate: Callable[[np.ndarray, Scorer], float]) -> dict[str, tuple[np.ndarray, Scorer, dict]]:
    """The ``implicit`` library's ALS (confidence 1 + the summed confidences: alpha 1) and BPR fit on
    ``train``, each with the setting of its grid that ``validate`` rates best fit on
    ``validation_train``; empty if the library is not installed (it is the ``bench`` extra's)."""
    try:
        from implicit.als import AlternatingLeastSquares
        from implicit.bpr import BayesianPersonalizedRanking
        from scipy.sparse import csr_matrix
    except ImportError:
        log.warning("the implicit library is not installed (pip install '.[bench]'): no ALS or BPR peers")
        return {}
    from threadpoolctl import threadpool_limits

    def matrices(events: Sequence[Observation]) -> tuple[np.ndarray, np.ndarray, object, object]:
        users, items, _, confidence = arrays(events, feedback)
        user_ids, user_rows = np.unique(users, return_inverse=True)
        item_ids, item_rows = np.unique(items, return_inverse=True)
        matrix = csr_matrix((confidence, (user_rows, item_rows)), shape=(len(user_ids), len(item_ids)))
        matrix.sum_duplicates()
        binary = matrix.copy()
        binary.data[:] = 1.0
        return user_ids, item_ids, matrix, binary

    def scorer(model: object, user_ids: np.ndarray) -> Scorer:
        u, v = np.asarray(model.user_factors), np.asarray(model.item_factors)  # type: ignore[attr-defined]
        row_of = {int(c): row for row, c in enumerate(user_ids)}
        mean = u.mean(axis=0)
        return lambda asked: np.array([u[r] if (r := row_of.get(int(c))) is not None else mean for c in asked]) @ v.T

    def fit(name: str, setting: object, events: Sequence[Observation]) -> tuple[np.ndarray, Scorer]:
        user_ids, item_ids, matrix, binary = matrices(events)
        if name == "implicit-als":
            model: object = AlternatingLeastSquares(factors=rank, regularization=setting, alpha=1.0,
                                                    iterations=iterations, random_state=0)
            model.fit(matrix, show_progress=False)  # type: ignore[attr-defined]
        else:
            rate, l2 = setting  # type: ignore[misc]
            model = BayesianPersonalizedRanking(factors=rank, learning_rate=rate, regularization=l2,
                                                iterations=BPR_ITERATIONS, random_state=0)
            model.fit(binary, show_progress=False)  # type: ignore[attr-defined]
        return item_ids, scorer(model, user_ids)

    found = {}
    with threadpool_limits(1, "blas"):  # the library's own threads do the work
        for name, grid in (("implicit-als", BATCH_L2), ("implicit-bpr", BPR_GRID)):
            rated = {setting: validate(*fit(name, setting, validation_train)) for setting in grid}
            best = max(rated, key=rated.__getitem__)
            log.info("%s: validation recall@10 %s, chosen %s", name, rated, best)
            found[name] = (*fit(name, best, train), {"setting": best,
                                                     "validation": {str(key): value for key, value in rated.items()}})
    return found


@dataclass(frozen=True)
class Ranking:
    data: str
    seed: int
    counts: dict[str, int]
    rows: dict[str, dict[str, float | None]]  # row → recall_at_10, ndcg_at_10 (overall)
    known: dict[str, dict[str, float | None]]  # row → the same, over the first version's users
    recovered: float | None
    chosen: dict[str, object]
    seconds: float = field(default=0.0, compare=False)

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "rows": {row: {**m, **({"recovered": self.recovered} if row == "b" else {})}
                                         for row, m in self.rows.items()}}

    def table(self) -> str:
        lines = [f"{self.data}: {self.counts['test_users']} test users; recall@10 and NDCG@10, seen items excluded",
                 f"{'row':<22} {'recall@10':>10} {'NDCG@10':>9} {'known users recall@10':>22}"]
        names = {"a": "(a) first version", "b": "(b) online updates", "c": "(c) full retrain"}
        for row, m in self.rows.items():
            known = self.known.get(row, {}).get("recall_at_10")
            lines.append(f"{names.get(row, row):<22} {_fmt(m['recall_at_10']):>10} {_fmt(m['ndcg_at_10']):>9} "
                         f"{_fmt(known):>22}")
        lines.append(f"(b) recovers {_fmt(self.recovered)} of the (a)-(c) recall@10 gap; chosen: {self.chosen}")
        return "\n".join(lines)


def evaluate(settings: Settings, ratings: Sequence[Observation], data: str, seed: int = 0,
             first_fraction: float = 0.5, params: TrainParams | None = None, master: str = "local[*]",
             spark_conf: Mapping[str, str] | None = None) -> Ranking:
    """The experiment on ``ratings`` against the broker in ``settings`` (files under ``settings.data``)."""
    started = time.monotonic()
    params = params or TrainParams(seed=seed)
    parts = split(ratings, seed, first_fraction)
    tune, verify = each_users_first(parts.stream, 0.7)
    run = _run(settings, seed)
    feedback = Feedback(True, run.confidences)
    first_events, stream_events = events_of(parts.first), events_of(parts.stream)
    judge = Judge.of(parts.first + parts.stream, parts.test)
    validation = Judge.of(parts.first + tune, verify)  # each user's last 30% of the stream held out
    train_events = first_events + stream_events

    def validate(items: np.ndarray, score: Scorer) -> float:
        return validation.metrics(items, score)["recall_at_10"] or 0.0

    # (c)'s λ and the peers' settings: fit on all but each user's last 30% of the stream.
    validation_train = first_events + events_of(tune)
    users, items, preference, confidence = arrays(validation_train, feedback)
    batch_l2 = {l2: validate(*fitted_scorer(implicit_als.fit(users, items, preference, confidence, params.rank, l2,
                                                              params.iterations, seed))) for l2 in BATCH_L2}
    reg = max(batch_l2, key=batch_l2.__getitem__)
    log.info("(c): validation recall@10 by λ %s, chosen %g", batch_l2, reg)
    params = replace(params, reg=reg)

    topics.ensure(run)
    produce(run, first_events, total=len(first_events))
    store = ModelStore(run.model_store)
    job = WarmJob(run, params, master, spark_conf)
    try:
        first_info = job("evaluate: first version")
        first = store.load(first_info.id)
        # (b)'s λ: on the stream alone, each user's first 70% replayed, the rest judged.
        online_l2 = {l2: validation.metrics(first.item_ids, version_scorer(first, replay(first, l2, events_of(tune),
                                                                                            feedback)))["recall_at_10"]
                     or 0.0 for l2 in ONLINE_L2}
        l2 = max(online_l2, key=online_l2.__getitem__)
        log.info("(b): stream recall@10 by λ %s, chosen %g", online_l2, l2)
        states = online(run.replace(l2=l2), first_info, stream_events)
        full_info = job("evaluate: full retrain")
        full = store.load(full_info.id)
    finally:
        job.close()

    known = np.array([first.knows_user(int(u)) for u in judge.users], bool)
    scorers: dict[str, tuple[np.ndarray, Scorer]] = {
        "a": (first.item_ids, version_scorer(first)),
        "b": (first.item_ids, version_scorer(first, {code: state.w for code, state in states.items()})),
        "c": (full.item_ids, version_scorer(full)),
        "popularity": popularity(train_events),
    }
    chosen: dict[str, object] = {"online_l2": l2, "online_validation": online_l2, "batch_l2": reg,
                                 "batch_validation": batch_l2}
    for name, (peer_items, scorer, setting) in library_peers(validation_train, train_events, feedback, params.rank,
                                                             params.iterations, validate).items():
        chosen[name] = setting
        scorers[name] = (peer_items, scorer)
    rows = {row: judge.metrics(items, score) for row, (items, score) in scorers.items()}
    known_rows = {row: judge.metrics(items, score, known) for row, (items, score) in scorers.items()
                  if row in ("a", "b", "c")}
    share = recovered(rows["a"]["recall_at_10"], rows["b"]["recall_at_10"], rows["c"]["recall_at_10"])
    return Ranking(data, seed, {"events": len(train_events) + len(events_of(parts.test)), "test_users": len(judge.users),
                                "test_known_users": int(known.sum())},
                   rows, known_rows, share, chosen, time.monotonic() - started)


def _run(settings: Settings, seed: int) -> Settings:
    token = uuid.uuid4().hex[:8]
    root = settings.data / f"evaluate-{token}"
    return settings.replace(namespace=f"{settings.namespace}evaluate-{token}-implicit-", data=root / "implicit",
                            models=str(root / "models"), training_log=None, holdout=0.0, feedback="implicit",
                            seed=seed, worker_metrics_port=0)


def _fmt(value: object) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)

