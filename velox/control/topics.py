"""The topics the feedback pipeline needs, created by whichever process starts first.

``observations`` and its dead letters have ``VELOX_PARTITIONS`` partitions (by user); the
worker's table changelog has as many, compacted, and so has ``item-corrections`` (the partitions'
item totals, not compacted); ``owners`` says who holds which; ``items`` holds the items'
attributes (compacted).
"""

from __future__ import annotations

from velox.control import item_corrections, items, owners
from velox.errors import ConfigError
from velox.kafka import topic_admin
from velox.settings import Settings


def changelog(settings: Settings) -> str:
    """The compacted topic mirroring the worker's user-state tables, named after its group."""
    return f"{settings.app_id}-user-state-changelog"


def ensure(settings: Settings) -> None:
    """Create the topics that are missing; refuse an ``observations`` topic of another partition count.

    Every worker and edge finds a user's partition from ``VELOX_PARTITIONS`` (murmur2 of the key):
    with a count other than the topic's, an edge reads another partition's states and answers for
    a known user as for a stranger, and a worker's changelog no longer mirrors its partitions.
    """
    observations = settings.topic("observations")
    partitions = topic_admin.create_topics(settings, {
        observations: settings.partitions,
        settings.topic("observations-dlq"): settings.partitions,
        settings.topic("model-metrics"): 1,
    })[observations]
    if partitions != settings.partitions:
        raise ConfigError(f"topic {observations} has {partitions} partitions but VELOX_PARTITIONS is "
                          f"{settings.partitions}: set VELOX_PARTITIONS={partitions} for every worker and edge")
    topic_admin.create_topics(settings, {changelog(settings): settings.partitions}, {"cleanup.policy": "compact"})
    item_corrections.ensure_topic(settings)
    owners.ensure_topic(settings)
    items.ensure_topic(settings)
