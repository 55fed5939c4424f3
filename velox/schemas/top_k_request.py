"""The body of ``POST /v1/models/{model}/top_k``: what ``GET`` asks, with candidates of any ids.

A query parameter of comma-separated candidates cannot carry ids that hold commas; a JSON list can.
"""

from __future__ import annotations

import msgspec

from velox.schemas import records
from velox.schemas.ids import Id


class TopKRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    user: Id
    k: int = 10
    candidates: list[Id] | None = None
    exclude_seen: bool = False


decode = records.decoder(TopKRequest)
