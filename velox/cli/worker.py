"""``velox worker``: the online learning worker alone, on either stream engine."""

from __future__ import annotations

import argparse

from velox.cli.flags import add_feedback, one_blas_thread, settings_flags
from velox.settings import Settings

RULES = ["sgd", "rls", "implicit"]
ENGINES = ["kafka", "faust"]


def add(commands: argparse._SubParsersAction) -> None:
    worker = commands.add_parser("worker", help="apply the observations to each user's weights, exactly once")
    worker.add_argument("--rule", choices=RULES, help="online update rule (VELOX_RULE)")
    worker.add_argument("--engine", choices=ENGINES, help="stream engine (VELOX_ENGINE)")
    worker.add_argument("--partitions", type=int, help="observations partitions (VELOX_PARTITIONS)")
    worker.add_argument("--metrics-port", dest="worker_metrics_port", type=int,
                        help="Prometheus port, 0 for none (VELOX_WORKER_METRICS_PORT)")
    settings_flags(worker, {"rule": "rule", "engine": "engine", "partitions": "partitions",
                            "worker_metrics_port": "worker_metrics_port", **add_feedback(worker)})
    worker.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    if settings.engine == "faust":
        from velox.streams import faust_engine as engine
    else:
        from velox.streams import kafka_engine as engine  # type: ignore[no-redef]

    with one_blas_thread():
        engine.run(settings)
    return 0
