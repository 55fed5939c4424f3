"""A request for a retrain, as the edge's admin call logs it on the ``retrain-requests`` topic."""

from __future__ import annotations

import msgspec


class RetrainRequest(msgspec.Struct, frozen=True):
    id: str
    model: str
    reason: str
    requested_at: float


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(RetrainRequest)


def encode(request: RetrainRequest) -> bytes:
    return _encoder.encode(request)


def decode(data: bytes) -> RetrainRequest:
    return _decoder.decode(data)
