"""A request for a retrain, as the edge's admin call logs it on the ``retrain-requests`` topic."""

from __future__ import annotations

import msgspec

from velox.schemas import records


class RetrainRequest(msgspec.Struct, frozen=True):
    id: str
    model: str
    reason: str
    requested_at: float


encode = records.encode
decode = records.decoder(RetrainRequest)
