"""``velox jars``: fetch the Kafka broker and Spark Kafka connector jars from Maven Central."""

from __future__ import annotations

import argparse
import logging

from velox.local import jars
from velox.settings import Settings

log = logging.getLogger("velox")


def add(commands: argparse._SubParsersAction) -> None:
    commands.add_parser("jars", help="fetch the Kafka broker and Spark Kafka connector jars").set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    for jar_set in (jars.KAFKA_BROKER, jars.SPARK_KAFKA):
        found = jars.fetch(jar_set, settings.cache)
        log.info("%s: %d jars in %s", jar_set.pom, len(found), jar_set.folder(settings.cache))
    return 0
