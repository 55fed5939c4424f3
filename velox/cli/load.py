"""``velox load movielens | csv | synthetic | items``: produce a data set to the observations topic, or
items' attributes to the items topic."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from velox.cli.flags import output_file
from velox.errors import ConfigError
from velox.settings import Settings

log = logging.getLogger("velox")


def add(commands: argparse._SubParsersAction) -> None:
    load = commands.add_parser("load", help="produce a data set to the observations topic (items: attributes to items)")
    load.add_argument("kind", choices=["movielens", "csv", "synthetic", "items"])
    load.add_argument("path", nargs="?", type=Path,
                      help="movielens: u.data, ratings.dat or ratings.csv (default: pyspark's sample); "
                           "csv: any CSV of feedback with a header; "
                           "synthetic: where to write the planted item features as a version file; "
                           "items: MovieLens's u.item, JSON lines or a CSV of items' attributes")
    load.add_argument("--user", help="csv: the column of the user ids")
    load.add_argument("--item", help="csv: the column of the item ids (items: of the item ids, default 'item')")
    load.add_argument("--attributes", help="items, CSV: the columns that are attributes, comma-separated "
                                           "(default: all but the item id's)")
    load.add_argument("--score", help="csv: the column of the scores, or a number every row scores (clicks)")
    load.add_argument("--kind", help="csv: the column of the interactions' kinds (implicit feedback), or a "
                                     "kind every row is (e.g. click)")
    load.add_argument("--time", help="csv: the column of the event times in seconds since the epoch "
                                     "(default: the time of loading)")
    load.add_argument("--order", choices=["file", "time"], default="file", help="file order or event-time order")
    load.add_argument("--if-empty", action="store_true",
                      help="movielens: load only into a system with no observations (a compose service's restart)")
    load.add_argument("--users", type=int, default=100_000, help="synthetic: users")
    load.add_argument("--events", type=int, default=1_000_000, help="synthetic: observations")
    load.add_argument("--noise", type=float, default=0.5, help="synthetic: noise standard deviation")
    load.add_argument("--changed", type=float, default=0.0,
                      help="synthetic: the share of users whose taste changes halfway through the observations")
    load.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    from velox.control import topics
    from velox.local import loader
    from velox.model import synthetic

    if args.kind == "items":
        return load_items(settings, args)
    if args.kind == "synthetic":
        out = None if args.path is None else output_file("the item features' file", args.path)
        topics.ensure(settings)
        truth = synthetic.planted(args.users, settings.items, settings.d, seed=settings.seed)
        if out is not None:
            out.write_bytes(synthetic.items_only(truth).to_npz())
            log.info("planted item features written to %s (use it as VELOX_INITIAL_VERSION)", out)
        loader.produce(settings, synthetic.observations(truth, args.events, args.noise, seed=settings.seed,
                                                        changed=args.changed), total=args.events)
        log.info("loaded %d synthetic observations of %s (noise %.2f, %.0f%% of users change taste halfway)",
                 args.events, truth.id, args.noise, 100 * args.changed)
        return 0
    if args.kind == "csv":
        if args.path is None or not (args.user and args.item and (args.score or args.kind)):
            raise ConfigError("load csv needs FILE, --user COL, --item COL and --score (a column, or a number) "
                              "or --kind (a column, or a kind)")
        number = None if args.score is None else loader.as_number(args.score)
        score = args.score if number is None else number
        path, events = args.path, loader.read_csv(args.path, args.user, args.item, score, args.time, args.kind,
                                                  list(settings.confidences))
        topics.ensure(settings)
    else:
        path = loader.ratings_file(args.path or loader.PYSPARK_SAMPLE)  # said before the broker is asked
        topics.ensure(settings)
        if args.if_empty and (held := loader.held_observations(settings)):
            log.info("nothing loaded: %s already holds %d observations", settings.topic("observations"), held)
            return 0
        events = loader.read_movielens(path)
        if settings.implicit:  # each rating a view, a high one a click too, as velox up loads them
            events = loader.as_interactions(events)
    if args.order == "time":
        events.sort(key=lambda event: event.time)
    loader.produce(settings, events, total=len(events))
    log.info("loaded %d ratings from %s into %s", len(events), path, settings.topic("observations"))
    return 0



def load_items(settings: Settings, args: argparse.Namespace) -> int:
    """Items' attributes to the ``items`` topic, every row checked before the first is written."""
    from velox.control import items
    from velox.local import item_files

    if args.path is None:
        raise ConfigError("load items needs FILE: MovieLens's u.item, JSON lines or a CSV with a header")
    columns = [name.strip() for name in args.attributes.split(",")] if args.attributes else None
    rows = item_files.read_items(args.path, args.item or "item", columns)
    written = items.save(settings, rows)
    log.info("loaded the attributes of %d items from %s into %s", written, args.path, items.topic(settings))
    return 0
