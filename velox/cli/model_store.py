"""``velox model list | activate VERSION``: the model store's versions; activating an older one is a rollback."""

from __future__ import annotations

import argparse
import logging

from velox.errors import ConfigError
from velox.settings import Settings

log = logging.getLogger("velox")


def add(commands: argparse._SubParsersAction) -> None:
    model = commands.add_parser("model", help="list the model store's versions, or activate one (rollback)")
    model.add_argument("action", choices=["list", "activate"])
    model.add_argument("version", nargs="?", help="the version to activate")
    model.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    from velox.control import versions
    from velox.model.store import ModelStore

    if args.action == "list":
        active = versions.active(settings)
        for info in ModelStore(settings.model_store).list():
            mark = "*" if active and active.version.id == info.id else " "
            rmse = f"{info.validation_rmse:.4f}" if info.validation_rmse is not None else "n/a"
            print(f"{mark} {info.id}  d={info.d}  rows={info.training_rows}  validation RMSE {rmse}")
        return 0
    if not args.version:
        raise ConfigError("model activate needs a version id (see `velox model list`)")
    versions.activate(settings, args.version, reason="activated by hand")
    log.info("activated %s", args.version)
    return 0
