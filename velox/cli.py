"""The ``velox`` command: one entry point, one subcommand per process or chore."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from velox import jars, processes
from velox.broker import LocalBroker, LocalCluster
from velox.errors import ConfigError, VeloxError
from velox.model.policies import KINDS
from velox.schemas.container import INPUTS
from velox.settings import Settings

log = logging.getLogger("velox")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="velox", description="Velox: personalized predictions in milliseconds, "
                                     "each user's model kept fresh from a stream of feedback on Kafka.")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (VELOX_BOOTSTRAP)")
    parser.add_argument("--data", type=Path, help="data directory (VELOX_DATA)")
    parser.add_argument("--cache", type=Path, help="jar cache directory (VELOX_CACHE)")
    commands = parser.add_subparsers(dest="command", required=True)

    kafka = commands.add_parser("kafka", help="the local Kafka broker, or a local cluster of them")
    kafka.add_argument("action", choices=["start", "stop", "status", "run"],
                       help="start: in the background; run: in the foreground, logging to stdout (a container); "
                            "status: exit 0 once it listens")
    kafka.add_argument("--brokers", type=int, help="start: a local cluster of this many brokers (each its own JVM, "
                                                   "two ports further per broker); stop and status find them all")
    kafka.add_argument("--secure", action="store_true",
                       help="a new broker listens with SASL_SSL (SCRAM-SHA-512, a throwaway CA); clients then need "
                            "VELOX_KAFKA_CONFIG=<data>/kafka/secure/client.properties")
    kafka.set_defaults(run=run_kafka)

    worker = commands.add_parser("worker", help="apply the observations to each user's weights, exactly once")
    worker.add_argument("--rule", choices=["sgd", "rls"], help="online update rule (VELOX_RULE)")
    worker.add_argument("--engine", choices=["kafka", "faust"], help="stream engine (VELOX_ENGINE)")
    worker.add_argument("--partitions", type=int, help="observations partitions (VELOX_PARTITIONS)")
    worker.add_argument("--metrics-port", dest="worker_metrics_port", type=int,
                        help="Prometheus port, 0 for none (VELOX_WORKER_METRICS_PORT)")
    worker.set_defaults(run=run_worker)

    up = commands.add_parser("up", help="the whole system in the foreground: broker, worker, first version, "
                                         "retrain controller, edge; Ctrl-C stops them")
    up.add_argument("--rule", choices=["sgd", "rls"], help="online update rule (VELOX_RULE)")
    up.add_argument("--engine", choices=["kafka", "faust"], help="the worker's stream engine (VELOX_ENGINE)")
    up.add_argument("--ratings", type=Path, help="MovieLens file loaded into an empty system (default: pyspark's sample)")
    add_edge_flags(up)
    up.set_defaults(run=run_up)

    serve = commands.add_parser("serve", help="run the edge (predict, top-k, observe) beside a worker")
    add_edge_flags(serve)
    serve.set_defaults(run=run_serve)

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
    retrain.set_defaults(run=run_retrain)

    model = commands.add_parser("model", help="list the model store's versions, or activate one (rollback)")
    model.add_argument("action", choices=["list", "activate"])
    model.add_argument("version", nargs="?", help="the version to activate")
    model.set_defaults(run=run_model)

    load = commands.add_parser("load", help="produce a data set to the observations topic")
    load.add_argument("kind", choices=["movielens", "synthetic"])
    load.add_argument("path", nargs="?", type=Path,
                      help="movielens: u.data, ratings.dat or ratings.csv (default: pyspark's sample); "
                           "synthetic: where to write the planted item features as a version file")
    load.add_argument("--order", choices=["file", "time"], default="file", help="file order or event-time order")
    load.add_argument("--if-empty", action="store_true",
                      help="movielens: load only into a system with no observations (a compose service's restart)")
    load.add_argument("--users", type=int, default=100_000, help="synthetic: users")
    load.add_argument("--events", type=int, default=1_000_000, help="synthetic: observations")
    load.add_argument("--noise", type=float, default=0.5, help="synthetic: noise standard deviation")
    load.add_argument("--changed", type=float, default=0.0,
                      help="synthetic: the share of users whose taste changes halfway through the observations")
    load.set_defaults(run=run_load)

    evaluate = commands.add_parser("evaluate", help="Velox's accuracy experiment through Kafka, a worker and Spark")
    evaluate.add_argument("path", nargs="?", type=Path,
                          help="u.data, ratings.dat or ratings.csv (default: pyspark's small sample; "
                               "MovieLens 100k is ../shared/data/ml-100k/u.data beside the checkout)")
    evaluate.add_argument("--seed", type=int, help="orders ratings with equal timestamps; ALS seed (VELOX_SEED)")
    evaluate.add_argument("--first-fraction", type=float, default=0.5,
                          help="the earliest share of the ratings that trains the first version (default 0.5)")
    evaluate.add_argument("--master", default="local[*]", help="Spark master")
    evaluate.add_argument("--json", type=Path, help="also write the result to this file")
    evaluate.set_defaults(run=run_evaluate)

    app = commands.add_parser("app", help="applications: several models behind one name, chosen by a policy")
    app_actions = app.add_subparsers(dest="action", required=True)
    register = app_actions.add_parser("register", help="create or replace an app")
    register.add_argument("name")
    register.add_argument("--default-output", type=float, required=True, help="the score answered when no model can")
    register.add_argument("--slo-ms", type=float, default=100.0, help="the app's latency objective")
    register.add_argument("--policy", choices=KINDS, default="fixed")
    register.add_argument("--weights", type=lambda text: [float(w) for w in text.split(",")], default=[],
                          help="ab: the split, e.g. 0.9,0.1, in the order the models are linked")
    register.add_argument("--epsilon", type=float, default=0.1, help="epsilon: the share of random choices")
    register.add_argument("--gamma", type=float, default=0.1, help="exp3: the share of uniform exploration")
    register.add_argument("--per-user", action="store_true", help="one policy state per user")
    register.add_argument("--sticky-s", type=float, default=0.0, help="a user keeps their model this long")
    for action in ("link", "unlink"):
        change = app_actions.add_parser(action, help=f"{action} a model: the system's model, popularity, or a model container")
        change.add_argument("name")
        change.add_argument("model")
    app_actions.add_parser("list", help="the registered apps")
    app.set_defaults(run=run_app)

    container = commands.add_parser("container", help="model containers: a model from any Python framework, "
                                                      "served to apps beside the split model")
    container_actions = container.add_subparsers(dest="action", required=True)
    for action, text in (("run", "run a container's replicas (restarted when one dies)"),
                         ("replica", "one replica (what run starts)")):
        serving = container_actions.add_parser(action, help=text)
        serving.add_argument("target", help="module:attribute, an object with predict_batch(inputs) or a function")
        serving.add_argument("--name", required=True, help="the name apps link")
        serving.add_argument("--version", default="1", help="the model's version (default 1)")
        serving.add_argument("--host", default="127.0.0.1", help="the address the replicas listen on")
        serving.add_argument("--input", dest="input_kind", choices=INPUTS, default=INPUTS[0],
                             help="what the model reads of a request (user,item: no context is sent, and "
                                  "answers are cached without it)")
        if action == "run":
            serving.add_argument("--replicas", type=int, default=1)
        else:
            serving.add_argument("--replica", default="0")
    container_actions.add_parser("list", help="the containers, their live replicas and the version served")
    set_version = container_actions.add_parser("set-version", help="the version edges route a container to "
                                                                   "(rollback included)")
    set_version.add_argument("name")
    set_version.add_argument("version")
    container.set_defaults(run=run_container)

    fetch = commands.add_parser("jars", help="fetch the Kafka broker and Spark Kafka connector jars")
    fetch.set_defaults(run=run_jars)

    reset = commands.add_parser("reset", help="stop what `velox up` started and delete all of this system's data")
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    reset.set_defaults(run=run_reset)
    return parser


def add_edge_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument("--host", dest="edge_host", help="the edge's address (VELOX_EDGE_HOST, default 127.0.0.1)")
    command.add_argument("--port", dest="edge_port", type=int, help="the edge's port (VELOX_EDGE_PORT, default 8000)")
    command.add_argument("--worker-id", dest="worker_id", help="the worker beside this edge (VELOX_WORKER_ID)")
    command.add_argument("--tls-cert", dest="tls_cert", type=Path,
                         help="serve HTTPS with this PEM certificate (VELOX_TLS_CERT)")
    command.add_argument("--tls-key", dest="tls_key", type=Path,
                         help="the certificate's PEM private key (VELOX_TLS_KEY)")


def run_kafka(settings: Settings, args: argparse.Namespace) -> int:
    if args.brokers is not None and (args.action != "start" or args.brokers < 1):
        raise ConfigError(f"--brokers {args.brokers}: start takes a cluster's size, 1 or more "
                          "(stop and status find its brokers themselves)")
    # ``run`` is one broker: on a cluster's folder it would start beside the cluster's nodes.
    cluster = LocalCluster(settings, {"start": args.brokers, "run": 1}.get(args.action))
    if args.action == "run":
        if running := cluster.running():
            raise ConfigError(f"a broker already runs on {settings.data} (pid {running[0].pid}): "
                              "`velox kafka stop` first, or leave it to run")
        LocalBroker(settings).run(secure=args.secure)
    if args.action == "start":
        started = time.monotonic()
        statuses = cluster.start(secure=args.secure)
        for status in statuses:
            log.info("kafka ready in %.1f s: %s", time.monotonic() - started, status.describe())
        if len(statuses) > 1:
            log.info("bootstrap for clients: VELOX_BOOTSTRAP=%s", cluster.bootstrap)
        if cluster.nodes[0].secrets.exists():
            log.info("SASL_SSL only: clients need VELOX_KAFKA_CONFIG=%s", cluster.nodes[0].secrets.client_properties)
    elif args.action == "stop":
        for status in cluster.stop():
            log.info("%s", status.describe())
    else:
        statuses = cluster.status()
        for status in statuses:
            print(status.describe())
        return 0 if all(status.ready for status in statuses) else 3
    return 0


def run_worker(settings: Settings, args: argparse.Namespace) -> int:
    if settings.engine == "faust":
        from velox.streams import faust_app as engine
    else:
        from velox.streams import worker as engine  # type: ignore[no-redef]

    with one_blas_thread():
        engine.run(settings)
    return 0


def one_blas_thread() -> contextlib.AbstractContextManager[object]:
    """Our matrix products are small (a 10,000 × 49 top-k at most): a second BLAS thread only
    spins against the broker and the other processes for the two cores, and under load the
    top-k product then waits behind it (bench/serve.py measures top-k's p99)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, "blas")


def run_up(settings: Settings, args: argparse.Namespace) -> int:
    """Broker; worker; data and a first version if the system is new; controller; the edge in the foreground.

    A worker or controller that exits on its own stops the rest, and ``up`` says which and where its log is."""
    from velox import load
    from velox.control import topics, versions

    ratings = None if args.ratings is None else load.ratings_file(args.ratings)
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
        return run_serve(settings, args)
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
    from velox import load

    held = held_observations(settings)
    if held == 0:
        path = ratings or load.PYSPARK_SAMPLE
        events = load.read_movielens(path)
        load.produce(settings, events, total=len(events))
        log.info("loaded %d ratings from %s", len(events), path)
    elif ratings is not None:
        log.warning("%s was NOT loaded: this system already holds %d observations (in %s); add the file with "
                    "`velox load movielens %s`, or start over with `velox reset`", ratings, held, settings.data,
                    ratings)


def held_observations(settings: Settings) -> int:
    """How many messages the observations topic holds (0: a new system)."""
    from velox import kafka

    return sum(kafka.end_offsets(settings, settings.topic("observations")).values())


def run_reset(settings: Settings, args: argparse.Namespace) -> int:
    """Stop what `velox up` started here and delete the system's data: the data directory, and the
    model store and training log where they are local folders elsewhere."""
    import shutil


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


def run_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from velox.serving.app import Edge, create_app

    edge = Edge.open(settings)
    try:
        with one_blas_thread():
            uvicorn.run(create_app(edge), host=settings.edge_host, port=settings.edge_port, log_level="info",
                        access_log=settings.access_log, ssl_certfile=settings.tls_cert, ssl_keyfile=settings.tls_key)
    finally:
        edge.close()
    return 0


def run_retrain(settings: Settings, args: argparse.Namespace) -> int:
    from velox.control import versions
    from velox.batch import controller, job
    from velox.batch.train import TrainParams

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


def run_model(settings: Settings, args: argparse.Namespace) -> int:
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


def run_load(settings: Settings, args: argparse.Namespace) -> int:
    from velox import load
    from velox.control import topics
    from velox.model import synthetic

    if args.kind == "synthetic":
        out = None if args.path is None else output_file("the item features' file", args.path)
        topics.ensure(settings)
        truth = synthetic.planted(args.users, settings.items, settings.d, seed=settings.seed)
        if out is not None:
            out.write_bytes(synthetic.items_only(truth).to_npz())
            log.info("planted item features written to %s (use it as VELOX_INITIAL_VERSION)", out)
        load.produce(settings, synthetic.observations(truth, args.events, args.noise, seed=settings.seed,
                                                      changed=args.changed), total=args.events)
        log.info("loaded %d synthetic observations of %s (noise %.2f, %.0f%% of users change taste halfway)",
                 args.events, truth.id, args.noise, 100 * args.changed)
        return 0
    path = load.ratings_file(args.path or load.PYSPARK_SAMPLE)  # a wrong path is said before the broker is asked
    topics.ensure(settings)
    if args.if_empty and (held := held_observations(settings)):
        log.info("nothing loaded: %s already holds %d observations", settings.topic("observations"), held)
        return 0
    events = load.read_movielens(path)
    if args.order == "time":
        events.sort(key=lambda event: event.time)
    load.produce(settings, events, total=len(events))
    log.info("loaded %d ratings from %s into %s", len(events), path, settings.topic("observations"))
    return 0


def run_evaluate(settings: Settings, args: argparse.Namespace) -> int:
    """On a throwaway broker and scratch folder: the experiment never touches a running system."""
    import json

    from velox import evaluate, load

    path = args.path or load.PYSPARK_SAMPLE
    ratings = load.read_movielens(path)
    out = None if args.json is None else output_file("--json", args.json)
    with evaluate.isolated(settings) as private:
        result = evaluate.evaluate(private, ratings, str(path), settings.seed, args.first_fraction, master=args.master)
    print(result.table())
    if out is not None:
        out.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return 0


def output_file(what: str, path: Path) -> Path:
    """``path``, if its folder exists: said before a command's work, not after it."""
    if not path.parent.is_dir():
        raise ConfigError(f"{what} {path}: there is no folder {path.parent}")
    return path


def run_app(settings: Settings, args: argparse.Namespace) -> int:
    import msgspec

    from velox.control import apps
    from velox.schemas.app import App

    if args.action == "register":
        app = apps.register(settings, App(args.name, args.default_output, args.slo_ms, [], args.policy, args.weights,
                                          args.epsilon, args.gamma, args.per_user, args.sticky_s))
    elif args.action in ("link", "unlink"):
        app = getattr(apps, args.action)(settings, args.name, args.model)
    else:
        for app in apps.current(settings).values():
            print(msgspec.json.encode(app).decode())
        return 0
    log.info("app %s: models %s, policy %s", app.name, ", ".join(app.models) or "none", app.policy)
    return 0


def run_container(settings: Settings, args: argparse.Namespace) -> int:
    import msgspec

    from velox.containers import model, supervisor
    from velox.containers.replica import ReplicaServer
    from velox.control import containers

    if args.action == "run":
        return supervisor.run(settings, args.target, args.name, args.version, args.replicas, args.host,
                              args.input_kind)
    if args.action == "replica":
        ReplicaServer(settings, model.load(args.target), args.name, args.version, args.replica, args.host,
                      input_kind=args.input_kind).run()
        return 0
    if args.action == "set-version":
        selected = containers.set_version(settings, args.name, args.version)
        log.info("container %s: edges route to version %s", selected.name, selected.version)
        return 0
    rows, now = containers.current(settings), time.time()
    for name in containers.names(rows, now):
        serving = containers.serving(rows, name, now)
        replicas = [r for r in containers.live(rows, now) if r.name == name]
        print(msgspec.json.encode({"name": name, "serving": serving[0] if serving else None,
                                   "replicas": [msgspec.to_builtins(r) for r in replicas]}).decode())
    return 0


def run_jars(settings: Settings, args: argparse.Namespace) -> int:
    for jar_set in (jars.KAFKA_BROKER, jars.SPARK_KAFKA):
        found = jars.fetch(jar_set, settings.cache)
        log.info("%s: %d jars in %s", jar_set.pom, len(found), jar_set.folder(settings.cache))
    return 0


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
    try:
        flags = {field.name: getattr(args, field.name, None) for field in dataclasses.fields(Settings)}
        settings = Settings.from_env(**flags)
        return args.run(settings, args)
    except VeloxError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
