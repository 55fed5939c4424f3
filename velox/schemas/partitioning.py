"""Which partition of ``observations`` is a user's home: murmur2 of the key, as the Java client picks.

Every process agrees on it: the worker applies a user's events there (an event produced into
another partition is moved there first), the edge routes requests for the user to its owner,
and the retrain job and every replay read the user's events there.
"""

from __future__ import annotations

import functools
import struct


@functools.lru_cache(maxsize=1 << 20)
def home(key: bytes, partitions: int) -> int:
    """The home partition of ``key`` among ``partitions``: murmur2, made positive, mod n.

    Remembered: murmur2 in Python costs far more than a dictionary lookup, and the worker asks
    for every event.
    """
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 (seed 0x9747b28c), as in the Java client's ``Utils.murmur2``."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for k in struct.unpack_from(f"<{length // 4}I", data):  # the 4-byte blocks at once: long string ids
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = length % 4
    if tail:
        rest = data[length - tail:]
        if tail == 3:
            h ^= rest[2] << 16
        if tail >= 2:
            h ^= rest[1] << 8
        h ^= rest[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h if h < 2**31 else h - 2**32
