"""``velox retrain``: train a new version with Spark now, or watch for the triggers that start one."""

from __future__ import annotations

import argparse
import logging

from velox import processes
from velox.cli.flags import add_feedback, settings_flags
from velox.errors import ConfigError
from velox.settings import Settings

log = logging.getLogger("velox")


def add(commands: argparse._SubParsersAction) -> None:
    retrain = commands.add_parser("retrain", help="train a new version with Spark from the logged observations")
    retrain.add_argument("--master", default="local[*]", help="Spark master (local[*], spark://..., yarn, k8s://...)")
    retrain.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="a Spark setting")
    retrain.add_argument("--rank", type=int, help="ALS rank (the version's d is rank + 1)")
    retrain.add_argument("--reg", type=float, help="ALS regularisation")
    retrain.add_argument("--iterations", type=int, help="ALS iterations")
    retrain.add_argument("--no-activate", dest="activate", action="store_false", help="save, do not announce")
    retrain.add_argument("--reason", default="manual", help="why, as logged and announced")
    retrain.add_argument("--watch", action="store_true", help="run as the controller, starting jobs on triggers")
    retrain.add_argument("--every", type=float, help="with --watch: retrain every this many seconds")
    retrain.add_argument("--after", type=int, help="with --watch: retrain after this many new observations")
    retrain.add_argument("--drift", type=float, help="with --watch: tolerance over the validation RMSE")
    retrain.add_argument("--window", type=float, default=60.0, help="with --watch: seconds drift must last")
    retrain.add_argument("--debounce", type=float, default=30.0, help="with --watch: seconds between runs")
    retrain.add_argument("--first", action="store_true",
                         help="with --watch: train and activate a first version before watching, if none is active")
    settings_flags(retrain, add_feedback(retrain))
    retrain.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    from velox.batch import controller, job
    from velox.batch.train import TrainParams
    from velox.control import versions

    if bad := [pair for pair in args.conf if "=" not in pair]:
        raise ConfigError(f"--conf {bad[0]!r}: a Spark setting is KEY=VALUE")
    conf = dict(pair.split("=", 1) for pair in args.conf)
    params = TrainParams(**{name: value for name in ("rank", "reg", "iterations")
                            if (value := getattr(args, name)) is not None})
    watch_only = [flag for flag in ("every", "after", "drift", "first") if getattr(args, flag) not in (None, False)]
    if watch_only and not args.watch:
        raise ConfigError(f"--{watch_only[0]} is for the controller: add --watch")
    if not args.watch:
        job.retrain(settings, params, args.master, conf, activate=args.activate, reason=args.reason)
        return 0
    triggers = controller.Triggers(args.every, args.after, args.drift, args.window, args.debounce)
    if triggers.every is None and triggers.after is None and triggers.drift is None:
        raise ConfigError("--watch needs at least one of --every, --after, --drift")
    warm = job.WarmJob(settings, params, args.master, conf, args.activate)
    try:
        if args.first and versions.active(settings) is None:
            log.info("no version is active: training the first")
            warm("first version")
        watcher = controller.Controller(settings, triggers, warm)
        processes.on_stop(lambda: setattr(watcher, "stopping", True))
        log.info("watching %s: %s", settings.topic("observations"), triggers)
        watcher.run()
    finally:
        warm.close()
    return 0
