"""One consumed message, as either engine's client gives it: what ``Engine.apply`` and the mover take."""

from __future__ import annotations

from typing import NamedTuple


class Arrival(NamedTuple):
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None  # milliseconds since the epoch, if the message has one
    headers: list[tuple[str, bytes]] | None
