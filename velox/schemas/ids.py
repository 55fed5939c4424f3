"""Ids of users and items: strings, or non-negative integers that mean their decimal string.

An id is a string of 1 to 256 bytes of UTF-8 without control characters ("B07XJ8C8F5",
"news/2026/12/07/kafka-4-2", a UUID), or a non-negative 64-bit integer, which is the same id as
its decimal string: the Kafka key of a user's events is always the id's UTF-8 bytes (``key``), so
``42`` and ``"42"`` are one user, while ``"042"`` is another.

Inside the system every id is a 64-bit *code* (``code``): an id that is a canonical decimal
number is that number (0 to 2⁶³ − 1, so integer ids keep the codes, tables and records they
always had); any other string is the first 63 bits of its BLAKE2b hash with the sign bit set, a
negative number no integer id has. Codes fill the model's arrays, the user-state records' seen
items and the caches; where an id goes back out (top-k's items, a version's users' keys) the
strings are kept beside the codes (a version's ``names``). Two strings sharing a code would be one item to
the model: at 63 bits, ten million distinct strings share one with a chance of about one in
200,000 (n²/2⁶⁴), and the retrain refuses such a pair by name (``velox.batch.job.names``).
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Annotated

import msgspec

MAX_INT = 2**63 - 1
MAX_BYTES = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

IntId = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT)]
StrId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_BYTES, pattern=r"^[^\x00-\x1f\x7f]+$")]
Id = Annotated[IntId | StrId, msgspec.Meta(
    description="An id: a string of 1 to 256 bytes of UTF-8 without control characters, or a non-negative "
                "64-bit integer (the same id as its decimal string).")]


def problem(value: object) -> str | None:
    """Why ``value`` is not an id, in a sentence; None when it is one."""
    if type(value) is str and value.isascii() and 0 < len(value) <= MAX_BYTES and value.isprintable():
        return None  # the usual id (a UUID, a SKU): printable ASCII is no control character, a byte a character
    if isinstance(value, bool) or not isinstance(value, int | str):
        return f"an id is a string or a non-negative integer, got {type(value).__name__}"
    if isinstance(value, int):
        return None if 0 <= value <= MAX_INT else f"an integer id is between 0 and {MAX_INT}, got {value}"
    if not value:
        return "an id is not empty"
    try:
        size = len(value.encode())
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 spells it
        return "an id is valid UTF-8"
    if size > MAX_BYTES:
        return f"an id is at most {MAX_BYTES} bytes of UTF-8, got {size}"
    if _CONTROL.search(value):
        return "an id has no control characters"
    return None


def key(value: int | str) -> bytes:
    """The id's UTF-8 bytes: the Kafka key of a user's events and of their user-state record."""
    return str(value).encode()


def number(value: int | str) -> int | None:
    """The integer an id is (an int, or a string that is a canonical decimal integer id), else None."""
    if isinstance(value, int):
        return value
    if value.isascii() and value.isdigit() and (value == "0" or value[0] != "0") and len(value) <= 19:
        found = int(value)
        return found if found <= MAX_INT else None
    return None


@lru_cache(maxsize=2**18)
def code(value: int | str) -> int:
    """The id's 64-bit code: its number, or for any other string a negative 64-bit hash."""
    found = number(value)
    if found is not None:
        return found
    digest = int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "little")
    return (digest & MAX_INT) - 2**63


def given(raw: str) -> int | str:
    """An id read from text (a query parameter, a CSV cell) as answers give it back: an integer
    id as an int, any other as its string."""
    found = number(raw)
    return raw if found is None else found
