"""Prequential (predict, then learn) error, summed per (model version, partition) and drained as windows."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence

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


def window_rmse(windows: Sequence[ErrorWindow]) -> float:
    """The RMSE of several windows together (weighted by their counts); 0 for none.

    >>> window_rmse([ErrorWindow("v", 0, 0, 1, 3, 1.0, 1.0), ErrorWindow("v", 1, 0, 1, 1, 3.0, 3.0)])
    1.7320508075688772
    """
    count = sum(w.count for w in windows)
    return math.sqrt(sum(w.rmse**2 * w.count for w in windows) / count) if count else 0.0
