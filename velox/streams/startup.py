"""What a worker of either engine checks and sets before it starts."""

from __future__ import annotations

import gc

from velox.control import topics
from velox.settings import Settings


def prepare(settings: Settings) -> None:
    """The data folder, the topics (with ``VELOX_PARTITIONS`` partitions), and the garbage collector.

    Each event allocates short-lived objects and makes no cycles, while a swap holds a
    partition's states in memory: with the default thresholds, full collections walked them
    again and again during a swap, each a stall of the stream (``bench/swap.py`` measures the
    stalls)."""
    settings.data.mkdir(parents=True, exist_ok=True)
    topics.ensure(settings)
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
