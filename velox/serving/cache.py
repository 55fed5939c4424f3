"""Answers kept for repeated questions (top-k's, containers'): keyed by the weights' identity and what was asked.

The identity of a user's weights is (model version, user, the last source offset applied to
their record): any update to the user changes it, so an entry can never be served after the
update that made it stale; it just ages out (least recently used first). Hit rate in /metrics.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from prometheus_client import Counter

LOOKUPS = Counter("velox_edge_cache_lookups", "Prediction cache lookups, by result.", ["route", "result"])


class PredictionCache:
    def __init__(self, route: str, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self.entries: OrderedDict[Hashable, object] = OrderedDict()
        self.hit, self.miss = LOOKUPS.labels(route=route, result="hit"), LOOKUPS.labels(route=route, result="miss")

    def peek(self, key: Hashable) -> Any:
        """The cached answer for ``key``, or None (counted either way)."""
        found = self.entries.get(key) if self.capacity else None
        if found is None:
            self.miss.inc()
            return None
        self.entries.move_to_end(key)
        self.hit.inc()
        return found

    def put(self, key: Hashable, value: object) -> None:
        if self.capacity:
            self.entries[key] = value
            if len(self.entries) > self.capacity:
                self.entries.popitem(last=False)
