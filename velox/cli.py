"""The ``velox`` command: one entry point, one subcommand per process or chore."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from velox import jars
from velox.broker import LocalBroker
from velox.errors import VeloxError
from velox.settings import Settings

log = logging.getLogger("velox")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="velox", description=__doc__)
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (VELOX_BOOTSTRAP)")
    parser.add_argument("--data", type=Path, help="data directory (VELOX_DATA)")
    parser.add_argument("--cache", type=Path, help="jar cache directory (VELOX_CACHE)")
    commands = parser.add_subparsers(dest="command", required=True)

    kafka = commands.add_parser("kafka", help="run the local single-node Kafka broker")
    kafka.add_argument("action", choices=["start", "stop", "status"])
    kafka.set_defaults(run=run_kafka)

    worker = commands.add_parser("worker", help="run the online learning worker (Faust)")
    worker.add_argument("--rule", choices=["sgd", "rls"], help="online update rule (VELOX_RULE)")
    worker.add_argument("--partitions", type=int, help="observations partitions (VELOX_PARTITIONS)")
    worker.add_argument("--metrics-port", dest="worker_metrics_port", type=int,
                        help="Prometheus port, 0 for none (VELOX_WORKER_METRICS_PORT)")
    worker.set_defaults(run=run_worker)

    up = commands.add_parser("up", help="start the broker (unless running) and a worker; Ctrl-C stops both")
    up.add_argument("--rule", choices=["sgd", "rls"], help="online update rule (VELOX_RULE)")
    up.set_defaults(run=run_up)

    fetch = commands.add_parser("jars", help="fetch the Kafka broker and Spark Kafka connector jars")
    fetch.set_defaults(run=run_jars)
    return parser


def run_kafka(settings: Settings, args: argparse.Namespace) -> int:
    broker = LocalBroker(settings)
    if args.action == "start":
        started = time.monotonic()
        status = broker.start()
        log.info("kafka ready in %.1f s: %s", time.monotonic() - started, status.describe())
    elif args.action == "stop":
        log.info("%s", broker.stop().describe())
    else:
        status = broker.status()
        print(status.describe())
        return 0 if status.running else 3
    return 0


def run_worker(settings: Settings, args: argparse.Namespace) -> int:
    from velox.streams import worker

    worker.run(settings)
    return 0


def run_up(settings: Settings, args: argparse.Namespace) -> int:
    from velox.streams import worker

    broker = LocalBroker(settings)
    ours = not broker.status().running
    log.info("%s", broker.start().describe())
    try:
        worker.run(settings)
    finally:
        if ours:
            log.info("%s", broker.stop().describe())
    return 0


def run_jars(settings: Settings, args: argparse.Namespace) -> int:
    for jar_set in (jars.KAFKA_BROKER, jars.SPARK_KAFKA):
        found = jars.fetch(jar_set, settings.cache)
        log.info("%s: %d jars in %s", jar_set.pom, len(found), jar_set.folder(settings.cache))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        flags = {field.name: getattr(args, field.name, None) for field in dataclasses.fields(Settings)}
        settings = Settings.from_env(**flags)
        return args.run(settings, args)
    except VeloxError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
