"""Velox's accuracy experiment on MovieLens 100k, through Kafka, the worker and Spark (``velox evaluate``).

The earliest half of the ratings trains the first version; of each user's later ratings the first
70% are streamed to the worker, the last 30% are the test set. Test RMSE of (a) the first version
without online updates, (b) with the worker's ``sgd`` and ``rls`` updates, (c) a full retrain on
everything before the test set; and the share of the (a)−(c) gap that (b) recovers, against the
target of 80% overall, with known users no worse than (a).

    python bench/accuracy.py [--seed 0] [--json bench/results/accuracy.json] [--png bench/results/accuracy.png]

The JSON holds the prequential RMSE along the stream in equal chunks, for a plot; the PNG is drawn
when matplotlib is installed. The data is ``../shared/data/ml-100k/u.data`` beside the checkout;
without it this prints why and exits 0. Starts a broker of its own and stops it after.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import plotting
from velox.evaluate import GROUPS, Result, isolated
from velox.settings import Settings

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-100k" / "u.data"
RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 0.8


def verdicts(result: Result) -> dict[str, dict[str, bool]]:
    """Per rule: overall recovery at least the target; known users no worse than the first version."""
    return {rule: {
        "recovery_at_least_target": (result.recovery[rule]["overall"] or 0.0) >= TARGET,
        "known_users_no_worse": no_worse(result.rmse[f"b-{rule}"]["known"], result.rmse["a"]["known"]),
    } for rule in result.chosen}


def no_worse(online: float | None, static: float | None) -> bool:
    return online is None or static is None or online <= static


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
    axes.set(xlabel="stream position (%)", ylabel="RMSE", title=f"Prequential RMSE along the stream, {Path(result.path).name}")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="orders ratings with equal timestamps; ALS seed")
    parser.add_argument("--json", type=Path, default=RESULTS / "accuracy.json")
    parser.add_argument("--png", type=Path, default=RESULTS / "accuracy.png")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    if not DATA.exists():
        print(f"skipped: MovieLens 100k is not at {DATA}")
        return
    result = isolated(Settings.from_env(), DATA, args.seed)
    print(result.table())
    checks = verdicts(result)
    for rule, check in checks.items():
        shares = ", ".join(f"{group} {100 * share:.1f}%" for group in GROUPS
                           if (share := result.recovery[rule][group]) is not None)
        print(f"{rule}: recovered {shares}; target {100 * TARGET:.0f}% overall "
              f"{'met' if check['recovery_at_least_target'] else 'NOT met'}; known users "
              f"{'no worse' if check['known_users_no_worse'] else 'WORSE'} than (a)")
    print(f"{result.seconds:.0f} s end to end")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({**result.to_json(), "target": TARGET, "checks": checks}, indent=2) + "\n")
    if plot(result, args.png):
        print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
