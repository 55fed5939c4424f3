"""``velox kafka start | stop | status | run``: the local Kafka broker, or a local cluster of them."""

from __future__ import annotations

import argparse
import logging
import time

from velox.errors import ConfigError
from velox.local.broker import LocalBroker, LocalCluster
from velox.settings import Settings

log = logging.getLogger("velox")


def add(commands: argparse._SubParsersAction) -> None:
    kafka = commands.add_parser("kafka", help="the local Kafka broker, or a local cluster of them")
    kafka.add_argument("action", choices=["start", "stop", "status", "run"],
                       help="start: in the background; run: in the foreground, logging to stdout (a container); "
                            "status: exit 0 once it listens")
    kafka.add_argument("--brokers", type=int, help="start: a local cluster of this many brokers (each its own JVM, "
                                                   "two ports further per broker); stop and status find them all")
    kafka.add_argument("--secure", action="store_true",
                       help="a new broker listens with SASL_SSL (SCRAM-SHA-512, a throwaway CA); clients then need "
                            "VELOX_KAFKA_CONFIG=<data>/kafka/secure/client.properties")
    kafka.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
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
