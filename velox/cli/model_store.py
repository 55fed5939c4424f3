"""``velox model list | activate VERSION | unpin``: the model store's versions; activating an older one is a
rollback, and pins it (automatic retrains save but do not activate over a pin) until ``unpin``."""

from __future__ import annotations

import argparse
import logging

from velox.cli.status import moment
from velox.errors import ConfigError
from velox.settings import Settings

log = logging.getLogger("velox")


def add(commands: argparse._SubParsersAction) -> None:
    model = commands.add_parser("model", help="list the model store's versions, activate one (a rollback; it is "
                                              "pinned: automatic retrains do not activate over it), or unpin")
    model.add_argument("action", choices=["list", "activate", "unpin"])
    model.add_argument("version", nargs="?", help="the version to activate")
    model.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    from velox.control import pins, versions
    from velox.model.store import ModelStore

    if args.action == "list":
        active, pinned = versions.active(settings), pins.current(settings)
        for info in ModelStore(settings.model_store).list():
            mark = "*" if active and active.version.id == info.id else " "
            rmse = f"{info.validation_rmse:.4f}" if info.validation_rmse is not None else "n/a"
            when = f"activated {moment(active.activated_at)}, " if mark == "*" else ""
            held = f"  PINNED since {moment(pinned.at)} (velox model unpin)" if pinned and pinned.version == info.id else ""
            print(f"{mark} {info.id}  d={info.d}  rows={info.training_rows}  validation RMSE {rmse}  "
                  f"trained {moment(info.created_at)}, {when}trigger: {info.reason or 'not recorded'}{held}")
        return 0
    if args.action == "unpin":
        pins.unpin(settings)
        log.info("unpinned: automatic retrains activate their versions again")
        return 0
    if not args.version:
        raise ConfigError("model activate needs a version id (see `velox model list`)")
    versions.activate(settings, args.version, reason="activated by hand", by_hand=True)
    log.info("activated %s, pinned: automatic retrains save but do not activate until velox model unpin", args.version)
    return 0
