"""``velox evaluate PATH --items ITEMS --cold-items 0.2``: what an item's content recovers of the error
on items the version never saw rated, run through the real pipeline on a MovieLens file.

1. Split the ratings as the accuracy experiment does (``velox.experiments.accuracy.split``): the
   earliest share trains the first version; of each user's later ratings the first 70% are the
   stream, the last 30% the test.
2. Draw a share of the items (``--cold-items``, seeded): their ratings are withheld entirely from
   the first version (they come later in the log, with the stream, and stay in the test).
3. The items' attributes (``ITEMS``: u.item's genres and year, JSON lines or CSV) go to ``items``;
   the retrain job trains the first version and learns its content model from the attributes of
   the items it trained on (``velox.model.content``); then, with the withheld ratings and the
   stream in the log, a full retrain on everything before the test.

Test RMSE on the cold items' ratings and on the other items' of (a) the first version, cold items
at zero factors and bias (as without content), (b) the first version with the cold items at their
mapped factors and bias (as the edge serves them), (c) the full retrain; the share of the (a)−(c)
gap (b) recovers. Then the same with the item corrections the stream gives (what the workers'
totals serve, ``velox.model.corrections``: residuals against each version as served, the cold
items at their mapped rows under (b)), and with the users' online updates too (the stream replayed
through ``Learner`` with the settings' rule, on each version: the worker learns on the rows the
retrain saved, the cold items' mapped ones under (b)), so the recoveries are seen on top of each
other.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from velox.batch.job import WarmJob
from velox.batch.train import TrainParams
from velox.control import items, topics
from velox.errors import VeloxError
from velox.experiments.accuracy import (
    item_corrections,
    observed,
    online_errors,
    pairs,
    recovered,
    replayed,
    rmse,
    split,
)
from velox.local.item_files import Row
from velox.local.loader import produce
from velox.model.batch_scores import predict_many
from velox.model.corrections import corrected
from velox.model.learner import Learner, make_rule
from velox.model.store import ModelStore
from velox.model.version import ModelVersion
from velox.schemas.observation import Observation
from velox.settings import Settings

log = logging.getLogger("velox.experiments.cold_items")

TARGET = 0.3  # of the cold items' (a)−(c) gap that mapped factors should recover (issue 38)
GROUPS = ("cold", "other")
SYSTEMS = ("a", "b", "c", "a+corrections", "b+corrections", "a+corrections+users", "b+corrections+users")


@dataclass(frozen=True)
class Result:
    """Test RMSE per system and group (cold items, the others); the recovered shares; the checks."""

    data: str
    items: str
    seed: int
    first_fraction: float
    cold_share: float
    counts: dict[str, int]
    rmse: dict[str, dict[str, float | None]]
    recovery: dict[str, float | None]  # of the cold items' (a)−(c) gap, per system
    content: dict[str, float | int]  # the first version's content model: λ, columns, leave-one-out error
    checks: list[dict[str, object]]
    train_params: dict[str, float | int]
    seconds: float = field(default=0.0, compare=False)

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def table(self) -> str:
        names = {"a": "(a) zero factors", "b": "(b) mapped factors", "c": "(c) full retrain",
                 "a+corrections": "(a) + item corrections", "b+corrections": "(b) + item corrections",
                 "a+corrections+users": "(a) + corrections + users", "b+corrections+users": "(b) + corrections + users"}
        lines = [f"{'test RMSE':<28}{'cold items':>12}{'other items':>12}{'gap recovered':>15}"]
        for system, name in names.items():
            lines.append(f"{name:<28}" + "".join(f"{_fmt(self.rmse[system][g]):>12}" for g in GROUPS)
                         + f"{_percent(self.recovery.get(system)):>15}")
        lines.append(f"{'ratings in the test set':<28}{self.counts['test_cold']:>12,}{self.counts['test_other']:>12,}")
        lines.append(f"content model: λ {self.content['l2']:g}, {self.content['columns']} attribute columns, "
                     f"{self.content['items']} trained items described")
        lines += [f"{'met' if check['met'] else 'NOT met'}: {check['what']}: {check['figure']:.4f} "
                  f"(target {check['target']})" for check in self.checks]
        return "\n".join(lines)


def cold_draw(ratings: Sequence[Observation], share: float, seed: int) -> set[int]:
    """A seeded ``share`` of the rated items (codes)."""
    rated = np.unique(np.array([r.item_code for r in ratings], np.int64))
    return set(np.random.default_rng(seed).choice(rated, round(share * len(rated)), replace=False).tolist())


def checked_share(cold_share: float) -> float:
    """``--cold-items``, said wrong before anything starts."""
    if not 0 < cold_share < 1:
        raise VeloxError(f"--cold-items: the cold items' share is between 0 and 1, got {cold_share}")
    return cold_share


def evaluate(settings: Settings, ratings: Sequence[Observation], data: str, rows: Sequence[Row], items_path: Path,
             cold_share: float, seed: int = 0, first_fraction: float = 0.5, params: TrainParams | None = None,
             master: str = "local[*]") -> Result:
    """The experiment against the broker in ``settings`` (files under ``settings.data``) with the items'
    attributes ``rows`` (read from ``items_path``)."""
    started = time.monotonic()
    checked_share(cold_share)
    params = params or TrainParams(seed=seed)
    parts = split(ratings, seed, first_fraction)
    cold = cold_draw(ratings, cold_share, seed)
    first_rows = [r for r in parts.first if r.item_code not in cold]
    withheld = [r for r in parts.first if r.item_code in cold]
    token = uuid.uuid4().hex[:8]
    run = settings.replace(namespace=f"{settings.namespace}cold-{token}-", data=settings.data / f"cold-{token}",
                           models=None, training_log=None, holdout=0.0, seed=seed, worker_metrics_port=0)
    topics.ensure(run)
    items.save(run, rows)
    log.info("%s: %d of %d items cold; the first version trains on %d ratings (%d withheld), %d streamed, %d tested",
             data, len(cold), len({r.item_code for r in ratings}), len(first_rows), len(withheld), len(parts.stream),
             len(parts.test))
    store = ModelStore(run.model_store)
    job = WarmJob(run, params, master)
    try:
        produce(run, first_rows, total=len(first_rows))
        stored = store.load(job("evaluate --cold-items: first version, cold items withheld").id)
        if stored.content is None:
            raise VeloxError("the first version has no content model: none of its items has attributes")
        produce(run, withheld + parts.stream, total=len(withheld) + len(parts.stream))
        full = store.load(job("evaluate --cold-items: full retrain, everything before the test").id)
    finally:
        job.close()
    result = judged(data, str(items_path), seed, first_fraction, cold_share, parts.stream, parts.test, cold,
                    stored.as_trained(), stored, full, run, params)
    return Result(**{**asdict(result), "seconds": time.monotonic() - started})


def judged(data: str, items_path: str, seed: int, first_fraction: float, cold_share: float,
           stream: Sequence[Observation], test: Sequence[Observation], cold: set[int], first: ModelVersion,
           mapped: ModelVersion, full: ModelVersion, settings: Settings, params: TrainParams) -> Result:
    """The result of the experiment's versions on its test (``first`` as trained; ``mapped``: with the
    items described by content, as the retrain saves it). The corrections of each are what its
    workers count: the residuals against it."""
    truth, (users, test_items) = observed(test), pairs(test)
    is_cold = np.isin(test_items, np.fromiter(cold, np.int64, len(cold)))
    totals = {"a": item_corrections(first, stream), "b": item_corrections(mapped, stream)}
    k = {system: found.shrinkage(settings.item_shrinkage_floor) for system, found in totals.items()}
    served = {"a": first, "b": mapped, "c": full, "a+corrections": corrected(first, totals["a"], k["a"]),
              "b+corrections": corrected(mapped, totals["b"], k["b"])}
    errors = {system: truth - predict_many(version, users, test_items) for system, version in served.items()}
    rule = make_rule(**settings.rule_params())
    for system, trained in (("a", first), ("b", mapped)):
        learned = replayed(Learner(trained, rule, keep_known=settings.keep_known), stream).vectors
        errors[f"{system}+corrections+users"] = online_errors(served[f"{system}+corrections"], learned, test)
    table = {system: {"cold": rmse(e[is_cold]), "other": rmse(e[~is_cold])} for system, e in errors.items()}
    gap = {system: recovered(table["a"]["cold"], table[system]["cold"], table["c"]["cold"]) for system in SYSTEMS}
    model = first.content
    assert model is not None
    trained = first.items.rows(test_items) < len(first.item_ids)
    changed = float(np.max(np.abs(errors["b"] - errors["a"])[trained], initial=0.0))
    checks = [
        {"what": "cold items: share of the (a)-(c) RMSE gap recovered by mapped factors", "figure": gap["b"],
         "target": TARGET, "met": gap["b"] is not None and gap["b"] >= TARGET},
        {"what": "other items: RMSE with content minus without (no loss: at most 0)",
         "figure": (table["b"]["other"] or 0.0) - (table["a"]["other"] or 0.0), "target": 0.0,
         "met": (table["b"]["other"] or 0.0) <= (table["a"]["other"] or 0.0)},
        {"what": "items the first version trained on: largest change of a score by content (none: 0)",
         "figure": changed, "target": 0.0, "met": changed == 0.0},
    ]
    return Result(
        data=data, items=items_path, seed=seed, first_fraction=first_fraction, cold_share=cold_share,
        counts={"cold_items": len(cold), "test": len(test), "test_cold": int(is_cold.sum()),
                "test_other": int((~is_cold).sum()), "test_trained": int(trained.sum()),
                "first_items": len(first.item_ids),
                "full_items": len(full.item_ids)},
        rmse=table, recovery=gap,
        content={"l2": model.l2, "columns": len(model.columns), "loo_rmse": model.loo_rmse,
                 "items": len(mapped.item_ids) - len(first.item_ids), "item_shrinkage": k["b"]},
        checks=checks, train_params=asdict(params),
    )


def _percent(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
