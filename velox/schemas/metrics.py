"""The prequential error record on ``model-metrics``: one per (model version, partition) window.

Each observation is scored before it is learned, so the error is honest out-of-sample error
for the version that served it. The retrain controller reads these records.
"""

from __future__ import annotations

import msgspec


class ErrorWindow(msgspec.Struct, frozen=True):
    version: str
    partition: int
    start: float  # seconds since the epoch
    end: float
    count: int
    rmse: float
    mae: float


_decoder = msgspec.json.Decoder(ErrorWindow)
_encoder = msgspec.json.Encoder()


def encode(window: ErrorWindow) -> bytes:
    return _encoder.encode(window)


def decode(data: bytes) -> ErrorWindow:
    return _decoder.decode(data)
