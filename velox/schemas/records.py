"""JSON records on Velox's own topics: one encoder for every record type, a typed decoder per type.

A decoder is strict: a record missing a field, or with a field of the wrong type, raises
``msgspec.ValidationError`` naming the field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import msgspec

T = TypeVar("T")

encode: Callable[[object], bytes] = msgspec.json.Encoder().encode


def decoder(kind: type[T]) -> Callable[[bytes], T]:
    """The function decoding JSON bytes into a ``kind``."""
    return msgspec.json.Decoder(kind).decode
