"""``velox container run | replica | list | set-version``: model containers, a model from any Python
framework served to apps beside the split model."""

from __future__ import annotations

import argparse
import logging
import time

from velox.cli.flags import settings_flags
from velox.schemas.container_rpc import INPUTS
from velox.settings import Settings

log = logging.getLogger("velox")


def positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {number}")
    return number


def add(commands: argparse._SubParsersAction) -> None:
    container = commands.add_parser("container", help="model containers: a model from any Python framework, "
                                                      "served to apps beside the split model")
    actions = container.add_subparsers(dest="action", required=True)
    for action, text in (("run", "run a container's replicas (restarted when one dies)"),
                         ("replica", "one replica (what run starts)")):
        serving = actions.add_parser(action, help=text)
        serving.add_argument("target", help="module:attribute, an object with predict_batch(inputs) or a function")
        serving.add_argument("--name", required=True, help="the name apps link")
        serving.add_argument("--version", default="1", help="the model's version (default 1)")
        serving.add_argument("--host", default="127.0.0.1", help="the address the replicas listen on")
        serving.add_argument("--input", dest="input_kind", choices=INPUTS, default=INPUTS[0],
                             help="what the model reads of a request (user,item: no context is sent, and "
                                  "answers are cached without it)")
        serving.add_argument("--threads", type=positive, default=1,
                             help="calls each replica runs at once (default 1; more where the model releases "
                                  "the GIL and is safe to call from several threads)")
        serving.add_argument("--model-threads", dest="model_threads", type=int,
                             help="threads the model may use within one call, OpenMP and BLAS (VELOX_MODEL_THREADS, "
                                  "default 1; 0: the libraries' own default, one per core)")
        settings_flags(serving, {"model_threads": "model_threads"})
        if action == "run":
            serving.add_argument("--replicas", type=int, default=1)
        else:
            serving.add_argument("--replica", default="0")
    actions.add_parser("list", help="the containers, their live replicas and the version served")
    set_version = actions.add_parser("set-version", help="the version edges route a container to (rollback included)")
    set_version.add_argument("name")
    set_version.add_argument("version")
    container.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    import msgspec

    from velox.containers import served_model, supervisor
    from velox.containers.replica import ReplicaServer, limit_model_threads
    from velox.control import container_registry

    if args.action == "run":
        return supervisor.run(settings, args.target, args.name, args.version, args.replicas, args.host,
                              args.input_kind, args.threads)
    if args.action == "replica":
        limit_model_threads(settings.model_threads)
        ReplicaServer(settings, served_model.load(args.target), args.name, args.version, args.replica, args.host,
                      input_kind=args.input_kind, threads=args.threads).run()
        return 0
    if args.action == "set-version":
        selected = container_registry.set_version(settings, args.name, args.version)
        log.info("container %s: edges route to version %s", selected.name, selected.version)
        return 0
    rows, now = container_registry.current(settings), time.time()
    for name in container_registry.names(rows, now):
        serving = container_registry.serving(rows, name, now)
        replicas = [r for r in container_registry.live(rows, now) if r.name == name]
        print(msgspec.json.encode({"name": name, "serving": serving[0] if serving else None,
                                   "replicas": [msgspec.to_builtins(r) for r in replicas]}).decode())
    return 0
