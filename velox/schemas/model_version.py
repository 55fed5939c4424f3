"""What a model version is, as the model store keeps it and ``model-versions`` announces it.

``training_end`` maps each partition of ``observations`` to the first offset *not* in the
version's training set: the worker re-applies everything from there on top of the version,
which is how a swap loses no observation.
"""

from __future__ import annotations

import msgspec

from velox.schemas import records


class VersionInfo(msgspec.Struct, frozen=True):
    id: str
    created_at: float
    d: int
    training_end: dict[int, int]
    training_rows: int = 0
    holdout_rows: int = 0
    validation_rmse: float | None = None
    params: dict[str, float | int | str] = {}
    reason: str = ""  # why it was trained: the retrain's trigger ("drift: ...", "manual", ...)


class Activation(msgspec.Struct, frozen=True):
    """The record on the compacted ``model-versions`` topic, keyed by model name: the one truth."""

    model: str
    version: VersionInfo
    store: str  # where the version's files are (the model store root)
    activated_at: float
    reason: str = ""


class Pin(msgspec.Struct, frozen=True):
    """The record on the compacted ``model-pins`` topic, keyed by model name: a version an operator
    chose, which automatic retrains do not activate over."""

    model: str
    version: str
    at: float
    by: str  # what pinned it ("velox model activate", "the edge's activate call")


encode = records.encode
decode_info = records.decoder(VersionInfo)
decode_activation = records.decoder(Activation)
decode_pin = records.decoder(Pin)
