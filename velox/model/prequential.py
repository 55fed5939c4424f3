"""Prequential (predict, then learn) error, summed per (model version, partition) and drained as windows."""

from __future__ import annotations

import math
import time
from collections import defaultdict

import numpy as np

from velox.schemas.error_window import ErrorWindow


class PrequentialErrors:
    def __init__(self) -> None:
        self._sums: defaultdict[tuple[str, int], list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
        self._start = time.time()

    def record_many(self, version: str, partition: int, errors: np.ndarray) -> None:
        """Add a batch's errors (observed − predicted), all of one version and partition."""
        if len(errors):
            sums = self._sums[(version, partition)]
            sums[0] += len(errors)
            sums[1] += float(errors @ errors)
            sums[2] += float(np.abs(errors).sum())

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
