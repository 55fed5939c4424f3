"""What the retrain controller last said of itself, on the compacted ``retrain-controller`` topic."""

from __future__ import annotations

import msgspec

from velox.schemas import records


class ControllerReport(msgspec.Struct, frozen=True):
    model: str
    at: float  # when it said it: a controller that stopped saying is not running
    triggers: str  # as configured
    drift: str  # the drift trigger's state in words
    running: str | None = None  # the reason of the run in progress
    last_run_at: float | None = None  # when the last run ended
    last_outcome: str = ""  # "activated V", "saved V, not activated: W is pinned", "failed: ..."


encode = records.encode
decode = records.decoder(ControllerReport)
