"""Velox's accuracy experiment through Kafka, the worker and Spark (``velox evaluate``), and how it holds up.

The earliest share of the ratings trains the first version; of each user's later ratings the
first 70% are streamed to the worker, the last 30% are the test set. Test RMSE of (a) the first
version without online updates, (b) with the worker's ``sgd`` and ``rls`` updates (each with the
setting chosen on the stream alone, served with the edge's item corrections), (c) a full retrain
on everything before the test set; and the share of the (a)−(c) gap that (b) recovers, with and
without the item corrections.

The robustness table repeats it on MovieLens 100k with first-version shares 0.3, 0.5 and 0.7 and
seeds 0, 1 and 2, and on a planted stream where a third of the users change taste halfway
(``velox load synthetic --changed``). Targets, per row and rule: the known users' test RMSE not
above (a)'s; on MovieLens 100k, at least 95% of the gap recovered.

    python bench/accuracy.py [--rows all|main] [--json bench/results/accuracy.json]

``accuracy.json`` holds the main row (share 0.5, seed 0) with the prequential RMSE along the
stream, plotted in ``accuracy.png`` when matplotlib is installed; ``accuracy-robustness.json``
every row. The data is ``../shared/data/ml-100k/u.data`` beside the checkout; without it this
prints why and exits 0. Starts a broker of its own and stops it after.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path

import plotting

from velox.experiments.accuracy import GROUPS, Result, evaluate, isolated, no_worse
from velox.local.loader import read_movielens
from velox.model import synthetic
from velox.schemas.observation import Observation
from velox.settings import Settings

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-100k" / "u.data"
RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 0.95
FRACTIONS, SEEDS = (0.3, 0.5, 0.7), (0, 1, 2)
MAIN = (0.5, 0)
CHANGED = 1 / 3  # of the planted stream's users, who change taste halfway


def planted_ratings(seed: int = 0) -> list[Observation]:
    """MovieLens 100k's shape (943 users, 1,682 items, 100,000 ratings), planted at rank 10, a third of
    the users changing taste halfway."""
    truth = synthetic.planted(users=943, items=1682, d=11, seed=seed, global_mean=3.5)
    return list(synthetic.observations(truth, 100_000, noise=0.8, seed=seed, changed=CHANGED))


def verdicts(result: Result, movielens: bool) -> dict[str, dict[str, bool]]:
    """Per rule: known users no worse than the first version; on MovieLens, the recovery target."""
    return {rule: {
        "known_users_no_worse": no_worse(result.rmse[f"b-{rule}"]["known"], result.rmse["a"]["known"]),
        **({"recovery_at_least_target": (result.recovery[rule]["overall"] or 0.0) >= TARGET} if movielens else {}),
    } for rule in result.chosen}


def row(result: Result, movielens: bool) -> dict[str, object]:
    return {"data": result.data, "first_fraction": result.first_fraction, "seed": result.seed,
            "rmse": result.rmse, "recovery": result.recovery, "worse_known": result.worse_known,
            "ceiling": result.ceiling, "new_on_retrained_items": result.new_on_retrained_items,
            "users_only": result.users_only, "item_shrinkage": result.item_shrinkage,
            "chosen": {rule: asdict(trial) for rule, trial in result.chosen.items()},
            "counts": result.counts, "seconds": result.seconds, "checks": verdicts(result, movielens)}


def plot(result: Result, path: Path) -> bool:
    """The prequential RMSE along the stream per system; False when matplotlib is not installed."""
    pyplot = plotting.pyplot()
    if pyplot is None:
        return False
    figure, axes = pyplot.subplots(figsize=(7, 4))
    labels = {"a": "(a) first version, no updates", "b-sgd": "(b) online sgd", "b-rls": "(b) online rls"}
    for system, points in result.stream_rmse.items():
        axes.plot([100 * (k + 1) / len(points) for k in range(len(points))], points, label=labels[system])
    for system in ("a", "c"):
        axes.axhline(result.rmse[system]["overall"], linestyle=":", color="grey" if system == "a" else "black",
                     label=f"test RMSE ({system})")
    axes.set(xlabel="stream position (%)", ylabel="RMSE", title=f"Prequential RMSE along the stream, {result.data}")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
    return True


def report(result: Result, checks: dict[str, dict[str, bool]]) -> None:
    print(f"\n{result.data}, first version on the earliest {result.first_fraction:.0%}, seed {result.seed}")
    print(result.table())
    for rule, check in checks.items():
        shares = ", ".join(f"{group} {100 * share:.1f}%" for group in GROUPS
                           if (share := result.recovery[rule][group]) is not None)
        target = check.get("recovery_at_least_target")
        print(f"{rule}: recovered {shares}" + ("" if target is None else
              f"; target {100 * TARGET:.0f}% {'met' if target else 'NOT met'}") +
              f"; known users {'no worse' if check['known_users_no_worse'] else 'WORSE'} than (a)")
    print(f"{result.seconds:.0f} s end to end", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", choices=["all", "main"], default="all",
                        help="main: ml-100k with share 0.5 and seed 0 only; all: the robustness table too")
    parser.add_argument("--json", type=Path, default=RESULTS / "accuracy.json")
    parser.add_argument("--png", type=Path, default=RESULTS / "accuracy.png")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    if not DATA.exists():
        print(f"skipped: MovieLens 100k is not at {DATA}")
        return
    movielens = read_movielens(DATA)
    runs = [(fraction, seed) for fraction in FRACTIONS for seed in SEEDS] if args.rows == "all" else [MAIN]
    runs.sort(key=lambda run: run != MAIN)
    rows = []
    args.json.parent.mkdir(parents=True, exist_ok=True)
    with isolated(Settings.from_env()) as settings:
        for fraction, seed in runs:
            result = evaluate(settings, movielens, "ml-100k", seed, fraction)
            checks = verdicts(result, movielens=True)
            report(result, checks)
            rows.append(row(result, movielens=True))
            if (fraction, seed) == MAIN:
                main_row = {**result.to_json(), "target": TARGET, "checks": checks}
                args.json.write_text(json.dumps(main_row, indent=2) + "\n")
                if plot(result, args.png):
                    print(f"plot: {args.png}")
        if args.rows == "all":
            result = evaluate(settings, planted_ratings(), "planted, a third change taste halfway", 0, 0.5)
            report(result, verdicts(result, movielens=False))
            rows.append(row(result, movielens=False))
            (args.json.parent / "accuracy-robustness.json").write_text(
                json.dumps({"target": TARGET, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
