"""``velox evaluate``: Velox's accuracy experiment through Kafka, a worker and Spark, on a throwaway broker."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from velox.cli.flags import add_feedback, output_file, settings_flags
from velox.settings import Settings


def add(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser("evaluate", help="Velox's accuracy experiment through Kafka, a worker and Spark")
    evaluate.add_argument("path", nargs="?", type=Path,
                          help="u.data, ratings.dat or ratings.csv (default: pyspark's small sample; "
                               "MovieLens 100k is ../shared/data/ml-100k/u.data beside the checkout)")
    evaluate.add_argument("--seed", type=int, help="orders ratings with equal timestamps; ALS seed (VELOX_SEED)")
    evaluate.add_argument("--first-fraction", type=float, default=0.5,
                          help="the earliest share of the ratings that trains the first version (default 0.5)")
    evaluate.add_argument("--master", default="local[*]", help="Spark master")
    evaluate.add_argument("--json", type=Path, help="also write the result to this file")
    evaluate.add_argument("--items", type=Path,
                          help="items' attributes (u.item, JSON lines or CSV): with --cold-items, what an item's "
                               "content recovers on items the first version never saw rated")
    evaluate.add_argument("--cold-items", type=float, default=0.2,
                          help="with --items: the share of the items withheld from the first version (default 0.2)")
    settings_flags(evaluate, {"seed": "seed", **add_feedback(evaluate)})
    evaluate.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """On a throwaway broker and scratch folder: the experiment never touches a running system."""
    from velox.experiments import accuracy, ranking
    from velox.local import loader

    path = args.path or loader.PYSPARK_SAMPLE
    ratings = loader.read_movielens(path)
    out = None if args.json is None else output_file("--json", args.json)
    if args.items is not None:  # said wrong before a broker starts
        from velox.experiments import cold_items
        from velox.local.item_files import read_items

        rows = read_items(args.items)
        cold_items.checked_share(args.cold_items)
    with accuracy.isolated(settings) as private:
        if args.items is not None:
            result = cold_items.evaluate(private, ratings, str(path), rows, args.items, args.cold_items, settings.seed,
                                         args.first_fraction, master=args.master)
        else:
            experiment = ranking.evaluate if settings.implicit else accuracy.evaluate  # interactions: a ranking
            result = experiment(private, ratings, str(path), settings.seed, args.first_fraction, master=args.master)
    print(result.table())
    if out is not None:
        out.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return 0
