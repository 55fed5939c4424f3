"""The prequential error record on ``model-metrics``: one per (model version, partition) window.

Each observation is scored before it is learned, so the error is honest out-of-sample error
for the version that served it. The retrain controller reads these records.
"""

from __future__ import annotations

import msgspec

from velox.schemas import records


class ErrorWindow(msgspec.Struct, frozen=True):
    version: str
    partition: int
    start: float  # seconds since the epoch
    end: float
    count: int
    rmse: float
    mae: float


encode = records.encode
decode = records.decoder(ErrorWindow)
