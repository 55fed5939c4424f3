"""Prequential (predict, then learn) error, summed per (model version, partition) and drained as windows."""

from __future__ import annotations

import math
import time
from collections import defaultdict

from velox.schemas.metrics import ErrorWindow


class PrequentialErrors:
    def __init__(self) -> None:
        self._sums: defaultdict[tuple[str, int], list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
        self._start = time.time()

    def record(self, version: str, partition: int, error: float) -> None:
        sums = self._sums[(version, partition)]
        sums[0] += 1
        sums[1] += error * error
        sums[2] += abs(error)

    def drain(self) -> list[ErrorWindow]:
        """The windows since the last drain (only those that saw observations), and start anew."""
        end = time.time()
        windows = [
            ErrorWindow(version, partition, self._start, end, int(n), math.sqrt(squares / n), absolute / n)
            for (version, partition), (n, squares, absolute) in sorted(self._sums.items())
        ]
        self._sums.clear()
        self._start = end
        return windows
