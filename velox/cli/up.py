"""``velox up``: the whole system on this machine, in the foreground; Ctrl-C stops what it started."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from velox import processes
from velox.cli import serve
from velox.cli.flags import add_edge, add_feedback, settings_flags
from velox.cli.worker import ENGINES, RULES
from velox.errors import VeloxError
from velox.local.broker import LocalCluster
from velox.settings import Settings

log = logging.getLogger("velox")


def add(commands: argparse._SubParsersAction) -> None:
    up = commands.add_parser("up", help="the whole system in the foreground: broker, worker, first version, "
                                         "retrain controller, edge; Ctrl-C stops them")
    up.add_argument("--rule", choices=RULES, help="online update rule (VELOX_RULE)")
    up.add_argument("--engine", choices=ENGINES, help="the worker's stream engine (VELOX_ENGINE)")
    up.add_argument("--ratings", type=Path, help="MovieLens file loaded into an empty system (default: pyspark's sample)")
    settings_flags(up, {"rule": "rule", "engine": "engine", **add_edge(up), **add_feedback(up)})
    up.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Broker; worker; data and a first version if the system is new; controller; the edge in the foreground.

    A worker or controller that exits on its own stops the rest, and ``up`` says which and where its log is."""
    from velox.control import topics, versions
    from velox.local import loader

    ratings = None if args.ratings is None else loader.ratings_file(args.ratings)
    if (pid := processes.running_up(settings)) is not None:
        raise VeloxError(f"velox up already runs on {settings.data} (pid {pid}): stop it first (Ctrl-C in its "
                         "terminal, or `velox reset` to start over)")
    brokers, ours = local_brokers(settings)
    logs = settings.data / "logs"
    watch = processes.Watch()
    settings.data.mkdir(parents=True, exist_ok=True)
    processes.up_pid_file(settings).write_text(str(os.getpid()))
    try:  # from the broker's start on: a Ctrl-C at any step stops what was started
        for status in brokers.start():
            log.info("%s", status.describe())
        topics.ensure(settings)
        worker = watch.spawn("worker", settings, logs / "worker.log", "worker")
        load_if_new(settings, ratings)
        if versions.active(settings) is None:
            log.info("training the first version with Spark (log %s)", logs / "retrain.log")
            first = processes.spawn(settings, logs / "retrain.log", "retrain", "--reason", "first version")
            try:
                failed = first.wait() != 0
            finally:  # stopped with the rest if we are
                processes.stop(first)
            if failed:
                raise VeloxError(f"the first retrain failed; see {logs / 'retrain.log'}")
        controller = watch.spawn("controller", settings, logs / "controller.log", "retrain", "--watch", "--every",
                                 "3600", "--drift", "0.1", "--window", "300")
        base = f"{settings.edge_url}/v1/models/{settings.model}"
        log.info("running: broker %s, worker pid %d, controller pid %d; logs in %s; edge on %s; try:\n"
                 "  curl '%s/predict?user=1&item=2'\n  curl '%s/top_k?user=1&k=10'\n"
                 "  curl -X POST -H 'Content-Type: application/json' -d '{\"user\": 1, \"item\": 2, \"score\": 5}' %s/observe",
                 settings.bootstrap, worker.pid, controller.pid, logs, settings.edge_url, base, base, base)
        return serve.run(settings, args)
    finally:
        watch.stop()
        for name, process, _ in reversed(watch.children):
            log.info("%s stopped (exit %s)", name, processes.stop(process))
        if ours:
            for status in brokers.stop():
                log.info("%s", status.describe())
        processes.up_pid_file(settings).unlink(missing_ok=True)
        if watch.died is not None:  # replaces the clean stop's exit: up failed, and says why
            name, code, log_file = watch.died
            raise VeloxError(f"the {name} exited with {code}, so everything stopped; see {log_file}")


def local_brokers(settings: Settings) -> tuple[LocalCluster, bool]:
    """The local broker, or the cluster ``velox kafka start --brokers N`` made; and whether none of
    it runs yet (then whoever starts it stops it too)."""
    brokers = LocalCluster(settings)
    return brokers, not brokers.running()


def load_if_new(settings: Settings, ratings: Path | None) -> None:
    """Load ``ratings`` (default: pyspark's sample) into a system with no observations; on one that
    has some, say that the file was not loaded and what to do instead."""
    from velox.local import loader

    held = loader.held_observations(settings)
    if held == 0:
        path = ratings or loader.PYSPARK_SAMPLE
        events = loader.read_movielens(path)
        if settings.implicit:  # each rating a view, a high one a click too
            events = loader.as_interactions(events)
        loader.produce(settings, events, total=len(events))
        log.info("loaded %d %s from %s", len(events), "interactions" if settings.implicit else "ratings", path)
    elif ratings is not None:
        log.warning("%s was NOT loaded: this system already holds %d observations (in %s); add the file with "
                    "`velox load movielens %s`, or start over with `velox reset`", ratings, held, settings.data,
                    ratings)
