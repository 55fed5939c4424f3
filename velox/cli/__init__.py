"""The ``velox`` command: one entry point; each subcommand's flags and code in a module of its own.

Each command declares which of its flags are settings (``velox.cli.flags``); nothing else a
command parses becomes one.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence

from velox import processes
from velox.errors import VeloxError

log = logging.getLogger("velox")


def build_parser() -> argparse.ArgumentParser:
    # The commands are imported here, after ``main`` has set its signal handlers: a SIGTERM while
    # they import is then a clean stop (exit 0), not death by signal.
    from velox.cli import (
        app,
        container,
        evaluate,
        fetch_jars,
        load,
        local_kafka,
        model_store,
        reset,
        retrain,
        serve,
        status,
        up,
        worker,
    )
    from velox.cli.flags import add_global

    parser = argparse.ArgumentParser(prog="velox", description="Velox: personalized predictions in milliseconds, "
                                     "each user's model kept fresh from a stream of feedback on Kafka.")
    add_global(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    for command in (local_kafka, worker, up, serve, status, retrain, model_store, load, evaluate, app, container,
                    fetch_jars, reset):
        command.add(commands)
    return parser


def hang_up(*_: object) -> None:
    """A closed terminal stops a command the way SIGTERM does, through whichever handler is set now
    (the server's, the worker's, or ``processes.terminate``)."""
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)  # Spark's gateway says each connection it opens and closes
    # SIGTERM before a command installs its own handler (still importing Spark, say) is a clean
    # stop too: exit 0 through the finally blocks, not death by signal (-15).
    signal.signal(signal.SIGTERM, processes.terminate)
    signal.signal(signal.SIGHUP, hang_up)
    args = build_parser().parse_args(argv)
    from velox.cli.flags import settings_of

    try:
        return args.run(settings_of(args), args)
    except VeloxError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
