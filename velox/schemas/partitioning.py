"""Which partition of ``observations`` is a user's home: murmur2 of the key, as the Java client picks.

Every process agrees on it: the worker applies a user's events there (an event produced into
another partition is moved there first), the edge routes requests for the user to its owner,
and the retrain job and every replay read the user's events there.
"""

from __future__ import annotations

import functools
import struct

import numpy as np


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


def homes(keys: np.ndarray, partitions: int) -> np.ndarray:
    """``home`` of each of ``keys`` (a ``bytes_`` array), as int16: a whole version's users at once.

    >>> homes(np.array([b"21", b"abc"]), 8).tolist() == [home(b"21", 8), home(b"abc", 8)]
    True
    """
    return ((murmur2_many(keys) & 0x7FFFFFFF) % partitions).astype(np.int16)


def murmur2_many(keys: np.ndarray) -> np.ndarray:
    """``murmur2`` of each of ``keys`` (a ``bytes_`` array: ids hold no NUL byte, which numpy would
    strip), as int32: the same steps on a column of keys of each length at once.
    """
    keys = np.asarray(keys, np.bytes_)
    width = keys.dtype.itemsize
    raw = keys.view(np.uint8).reshape(len(keys), width) if width else np.zeros((len(keys), 0), np.uint8)
    lengths = np.count_nonzero(raw, axis=1)
    out = np.empty(len(keys), np.uint32)
    for length in np.unique(lengths).tolist():
        at = np.flatnonzero(lengths == length)
        out[at] = _murmur2_of_length(raw[at, :length], length)
    return out.view(np.int32)


def _murmur2_of_length(data: np.ndarray, length: int) -> np.ndarray:
    """murmur2 of the rows of ``data`` (uint8, ``length`` columns); uint32 arithmetic wraps as Java's int."""
    m = np.uint32(0x5BD1E995)
    h = np.full(len(data), (0x9747B28C ^ length) & 0xFFFFFFFF, np.uint32)
    blocks = np.ascontiguousarray(data[:, :length - length % 4]).view("<u4")
    for column in range(length // 4):
        k = blocks[:, column] * m
        k ^= k >> np.uint32(24)
        k *= m
        h *= m
        h ^= k
    tail = length % 4
    if tail:
        rest = data[:, length - tail:].astype(np.uint32)
        if tail == 3:
            h ^= rest[:, 2] << np.uint32(16)
        if tail >= 2:
            h ^= rest[:, 1] << np.uint32(8)
        h ^= rest[:, 0]
        h *= m
    h ^= h >> np.uint32(13)
    h *= m
    h ^= h >> np.uint32(15)
    return h
