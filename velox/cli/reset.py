"""``velox reset``: stop what ``velox up`` started and delete all of this system's data."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from velox import processes
from velox.errors import VeloxError
from velox.local.broker import LocalCluster
from velox.settings import Settings

log = logging.getLogger("velox")


def add(commands: argparse._SubParsersAction) -> None:
    reset = commands.add_parser("reset", help="stop what `velox up` started and delete all of this system's data")
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    reset.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Stop what `velox up` started here and delete the system's data: the data directory, and the
    model store and training log where they are local folders elsewhere."""
    places = [settings.data]
    for place in (settings.model_store, settings.training_log_path):
        if "://" in place:
            log.warning("not removed: %s is not a local folder; delete it with its own tools", place)
        else:
            places.append(Path(place))
    megabytes = {place: sum(f.stat().st_size for f in place.rglob("*") if f.is_file()) / 2**20 for place in places
                 if place.exists() and not any(place != other and place.is_relative_to(other) for other in places)}
    if not megabytes:
        log.info("nothing to remove: no data at %s", settings.data)
        return 0
    listing = ", ".join(f"{place} ({size:.1f} MB)" for place, size in megabytes.items())
    if not args.yes and answer(f"delete {listing} for good? [y/N] ") not in ("y", "yes"):
        log.info("nothing removed")
        return 1
    if (pid := processes.running_up(settings)) is not None:
        log.info("stopping velox up (pid %d)", pid)
        if not processes.stop_pid(pid):
            raise VeloxError(f"velox up (pid {pid}) did not stop within 90 s; nothing removed")
    brokers = LocalCluster(settings)  # every node of a local cluster: their files are about to go
    if brokers.running():
        for status in brokers.stop():
            log.info("%s", status.describe())
    for place, size in megabytes.items():
        shutil.rmtree(place)
        log.info("removed %s (%.1f MB)", place, size)
    return 0


def answer(question: str) -> str:
    """The user's answer, lower case; none when nobody can answer (standard input closed: a script)."""
    try:
        return input(question).strip().lower()
    except EOFError:
        print(file=sys.stderr)
        log.info("no answer on standard input (--yes answers yes)")
        return ""
