"""``velox worker``: create the topics, pick the model version, run the Faust worker until stopped."""

from __future__ import annotations

import logging

import faust
from prometheus_client import start_http_server

from velox.kafka import create_topics
from velox.model.learner import Learner, make_rule
from velox.model.version import ModelVersion, random_version
from velox.settings import Settings
from velox.streams.app import create_app

log = logging.getLogger("velox.worker")


def initial_version(settings: Settings) -> ModelVersion:
    """The version to serve until a trained one is active: a file, or a seeded random θ."""
    if settings.initial_version is not None:
        return ModelVersion.load(settings.initial_version)
    return random_version(settings.items, settings.d, seed=settings.seed)


def ensure_topics(settings: Settings) -> None:
    create_topics(settings, {
        settings.topic("observations"): settings.partitions,
        settings.topic("observations-dlq"): settings.partitions,
        settings.topic("model-metrics"): 1,
    })


def run(settings: Settings) -> None:
    settings.data.mkdir(parents=True, exist_ok=True)
    ensure_topics(settings)
    version = initial_version(settings)
    learner = Learner(version, make_rule(settings.rule, settings.learning_rate, settings.l2))
    app = create_app(settings, learner)
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port, addr="127.0.0.1")
    log.info(
        "worker %s: version %s (d=%d, %d items), rule %s, %d partitions, metrics on :%s",
        settings.app_id, version.id, version.d, len(version.item_ids), learner.rule, settings.partitions,
        settings.worker_metrics_port or "off",
    )
    faust.Worker(app, loglevel="INFO", redirect_stdouts=False).execute_from_commandline()
