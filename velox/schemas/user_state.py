"""The user-state record: one user's weights as the worker stores them in RocksDB and the changelog.

Binary, little-endian, never pickle::

    u8  format version (2)         u8  flags (bit 0: has the RLS statistics; bit 1: A⁻¹ is its
                                              upper triangle; bit 2: A⁻¹ is given by observations;
                                              bit 3: and their confidences, Implicit's)
    u16 d                          i64 observation count
    i64 last applied source offset (-1 before the first)
    u16 length of the model version id, then the id in UTF-8
    u32 number of seen items
    f32[d] w
    (RLS, bit 2)   f64 s, f64[d] b, u32 m, i64[m] the items observed on this version, oldest first
                   (bit 3: Implicit's, the distinct items, then f64[m] their summed confidences)
    (RLS, bit 1)   f64[d(d+1)/2] A⁻¹'s upper triangle, row by row, f64[d] b
    (RLS, neither) f64[d*d] A⁻¹, f64[d] b
    i64[seen] the items the user rated, oldest first (for top-k's ``exclude_seen``)

RLS needs A⁻¹ = (βᵐ s I + Σ βᵐ⁻ⁱ fᵢ fᵢᵀ)⁻¹ (``velox.model.rls``). While the user has fewer observations
on the version than dimensions, their items are the exact and smaller form of it: the version's
features of those items give A again, so an update writes one item id instead of d(d+1)/2
float64. After that the matrix is kept, as its upper triangle (it is symmetric).

The source offset is written in the same put as the weights: that is what makes replaying an
observation a no-op (exactly once).
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from velox.errors import InvalidUserState

FORMAT_VERSION = 2


_HEADER = struct.Struct("<BBHqqH")
_U32 = struct.Struct("<I")
NO_ITEMS = np.zeros(0, np.int64)  # read-only: no seen items, no observations yet
NO_ITEMS.flags.writeable = False
_HAS_RLS = 1
_TRIANGLE = 2
_OBSERVED = 4
_WEIGHTED = 8
_STRENGTH = struct.Struct("<d")


@lru_cache(maxsize=8)
def _upper(d: int) -> tuple[np.ndarray, np.ndarray]:
    """Where a d×d matrix's upper triangle is, row by row, in the flattened matrix; and for each
    cell of a symmetric matrix, where it is in that triangle (one ``take`` each way, cheaper than
    indexing by rows and columns)."""
    rows, columns = np.triu_indices(d)
    cell = np.empty((d, d), np.intp)
    cell[rows, columns] = cell[columns, rows] = np.arange(len(rows))
    return rows * d + columns, cell.ravel()


class UserState(NamedTuple):
    """``w`` scores items; ``b`` and either ``a_inv`` or ``observed`` with ``strength`` (RLS) or
    ``weights`` (Implicit) are the rule's sufficient statistics (all None for SGD). A tuple: the worker makes two per event, and a
    frozen dataclass costs more to make."""

    version: str
    w: np.ndarray
    count: int = 0
    offset: int = -1
    a_inv: np.ndarray | None = None
    b: np.ndarray | None = None
    seen: np.ndarray = NO_ITEMS
    observed: np.ndarray | None = None  # RLS or Implicit before d observations on the version: their items
    strength: float = 0.0  # with ``observed``: RLS's prior's strength s
    weights: np.ndarray | None = None  # Implicit, with ``observed``: each item's summed confidence


def encode(state: UserState, seen_of: bytes | None = None) -> bytes:
    """The record of ``state``; with ``seen_of`` (another record of the same user), with that
    record's seen items instead of the state's, copied without decoding them (a model swap keeps
    what the user saw)."""
    seen = state.seen.astype("<i8", copy=False).tobytes() if seen_of is None else _raw_seen(seen_of)
    version = state.version.encode()
    flags = 0 if state.b is None else _HAS_RLS | (_OBSERVED if state.observed is not None else _TRIANGLE)
    if state.weights is not None:
        flags |= _WEIGHTED
    parts = [
        _HEADER.pack(FORMAT_VERSION, flags, state.w.shape[0], state.count, state.offset, len(version)),
        version,
        _U32.pack(len(seen) // 8),
        state.w.astype("<f4", copy=False).tobytes(),
    ]
    if state.b is not None:
        b = state.b.astype("<f8", copy=False).tobytes()
        if state.observed is not None:
            parts += [_STRENGTH.pack(state.strength), b, _U32.pack(len(state.observed)),
                      state.observed.astype("<i8", copy=False).tobytes()]
            if state.weights is not None:
                parts.append(state.weights.astype("<f8", copy=False).tobytes())
        else:
            assert state.a_inv is not None, "an RLS state has A⁻¹ or its observations"
            parts += [np.take(state.a_inv, _upper(state.w.shape[0])[0]).astype("<f8", copy=False).tobytes(), b]
    parts.append(seen)
    return b"".join(parts)


def _raw_seen(data: bytes) -> bytes:
    """The seen items of a record as they are stored: its last bytes."""
    (n_seen,) = _U32.unpack_from(data, _HEADER.size + _HEADER.unpack_from(data)[-1])
    return data[len(data) - 8 * n_seen:] if n_seen else b""


def decode(data: bytes) -> UserState:
    if len(data) < _HEADER.size or data[0] != FORMAT_VERSION:
        found = data[0] if data else "nothing"
        raise InvalidUserState(f"user-state record has format {found}, expected {FORMAT_VERSION}")
    _, flags, d, count, offset, length = _HEADER.unpack_from(data)
    position = _HEADER.size + length
    version = data[_HEADER.size:position].decode()
    if len(data) < position + _U32.size:
        raise InvalidUserState(f"user-state record is {len(data)} bytes, too short for its header")
    (n_seen,) = _U32.unpack_from(data, position)
    position += _U32.size
    observed = 0
    if flags & _OBSERVED:
        at = position + 4 * d + _STRENGTH.size + 8 * d
        if len(data) < at + _U32.size:
            raise InvalidUserState(f"user-state record is {len(data)} bytes, too short for d={d}")
        (observed,) = _U32.unpack_from(data, at)
        rls = _STRENGTH.size + 8 * d + _U32.size + (16 if flags & _WEIGHTED else 8) * observed
    else:
        cells = d * (d + 1) // 2 if flags & _TRIANGLE else d * d
        rls = (8 * cells + 8 * d) if flags & _HAS_RLS else 0
    expected = position + 4 * d + rls + 8 * n_seen
    if len(data) != expected:
        raise InvalidUserState(f"user-state record is {len(data)} bytes, expected {expected} for d={d}")
    w = np.frombuffer(data, "<f4", d, position)
    seen = np.frombuffer(data, "<i8", n_seen, position + 4 * d + rls)
    if not flags & _HAS_RLS:
        return UserState(version, w, count, offset, seen=seen)
    position += 4 * d
    if flags & _OBSERVED:
        (strength,) = _STRENGTH.unpack_from(data, position)
        b = np.frombuffer(data, "<f8", d, position + _STRENGTH.size)
        at = position + _STRENGTH.size + 8 * d + _U32.size
        items = np.frombuffer(data, "<i8", observed, at)
        weights = np.frombuffer(data, "<f8", observed, at + 8 * observed) if flags & _WEIGHTED else None
        return UserState(version, w, count, offset, None, b, seen, items, strength, weights)
    stored = np.frombuffer(data, "<f8", cells, position)
    if flags & _TRIANGLE:
        a_inv = np.take(stored, _upper(d)[1]).reshape(d, d)
    else:
        a_inv = stored.reshape(d, d)
    b = np.frombuffer(data, "<f8", d, position + 8 * cells)
    return UserState(version, w, count, offset, a_inv, b, seen)
