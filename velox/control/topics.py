"""The topics the feedback pipeline needs, created by whichever process starts first.

``observations`` and its dead letters have ``VELOX_PARTITIONS`` partitions (by user); the
worker's table changelog has as many, compacted; ``owners`` says who holds which.
"""

from __future__ import annotations

from velox import kafka
from velox.control import owners
from velox.settings import Settings


def changelog(settings: Settings) -> str:
    """The compacted topic mirroring the worker's user-state tables, named after its group."""
    return f"{settings.app_id}-user-state-changelog"


def ensure(settings: Settings) -> None:
    kafka.create_topics(settings, {
        settings.topic("observations"): settings.partitions,
        settings.topic("observations-dlq"): settings.partitions,
        settings.topic("model-metrics"): 1,
    })
    kafka.create_topics(settings, {changelog(settings): settings.partitions}, {"cleanup.policy": "compact"})
    owners.ensure_topic(settings)
