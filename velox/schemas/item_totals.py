"""A partition's item totals on the ``item-corrections`` topic: what a worker counted for the corrections.

One message per checkpoint for each partition whose totals changed, on the topic's partition of
the same number as the source partition (``velox.streams.item_tallies`` writes them,
``velox.control.item_corrections`` reads them). Every value is CUMULATIVE: an item's Σ residual,
Σ residual² and count over the partition's counted events in ``[start, through)``, against
``version``; so a message sent twice changes nothing, and for each item the latest message that
lists it holds its totals. A message lists the items changed since the last one, or all of them
(a snapshot, ``full``); ``snapshot`` is the topic offset where the partition's latest complete
snapshot starts (-1: none yet, read from the partition's beginning), so a reader starts there and
reads to the end.

msgpack, the arrays as little-endian bytes (int64 codes and counts, float64 sums), never JSON
per item: a snapshot of a million items is 32 MB of arrays, in chunks below Kafka's message
size limit (``CHUNK_ITEMS``).

>>> import numpy as np
>>> message = decode(encode(ItemTotalsMessage("v1", 3, 100, 250, -1, True, np.array([7, -5]),
...     np.array([1.5, -2.0]), np.array([2.25, 4.0]), np.array([1, 1]), {-5: "jazz"})))
>>> message.partition, message.codes.tolist(), message.sums.tolist(), message.names
(3, [7, -5], [1.5, -2.0], {-5: 'jazz'})
"""

from __future__ import annotations

from itertools import pairwise
from typing import NamedTuple

import msgspec
import numpy as np

from velox.errors import InvalidItemTotals

CHUNK_ITEMS = 16_384  # items per message: 512 kB of arrays plus the names, below Kafka's 1 MB default
NAME_BYTES = 512 * 1024  # names per message, at most (a name is up to 256 bytes)


class _Wire(msgspec.Struct, array_like=True):
    version: str
    partition: int
    start: int
    through: int
    snapshot: int
    full: bool
    codes: bytes
    sums: bytes
    squares: bytes
    counts: bytes
    names: dict[int, str]


class ItemTotalsMessage(NamedTuple):
    version: str
    partition: int
    start: int  # the version's training end in the partition: the first offset counted
    through: int  # the first source offset not counted yet
    snapshot: int  # where the partition's latest complete snapshot starts on the topic (-1: none)
    full: bool  # part of a snapshot (every item of the partition's totals, over its messages)
    codes: np.ndarray  # int64: the items' id codes
    sums: np.ndarray  # float64: Σ residual
    squares: np.ndarray  # float64: Σ residual²
    counts: np.ndarray  # int64: ratings counted
    names: dict[int, str]  # string ids of the codes that are hashes


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Wire)


def encode(message: ItemTotalsMessage) -> bytes:
    return _encoder.encode(_Wire(
        message.version, message.partition, message.start, message.through, message.snapshot, message.full,
        np.ascontiguousarray(message.codes, "<i8").tobytes(), np.ascontiguousarray(message.sums, "<f8").tobytes(),
        np.ascontiguousarray(message.squares, "<f8").tobytes(), np.ascontiguousarray(message.counts, "<i8").tobytes(),
        message.names))


def decode(data: bytes) -> ItemTotalsMessage:
    """The message in ``data``; ``InvalidItemTotals`` when it is not one (with the reason)."""
    try:
        wire = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise InvalidItemTotals(f"not an item-totals message: {exc}") from None
    sizes = {len(wire.codes), len(wire.sums), len(wire.squares), len(wire.counts)}
    if len(sizes) != 1 or len(wire.codes) % 8:
        raise InvalidItemTotals(f"arrays of different lengths or not of 8-byte values: {sorted(sizes)} bytes")
    return ItemTotalsMessage(
        wire.version, wire.partition, wire.start, wire.through, wire.snapshot, wire.full,
        np.frombuffer(wire.codes, "<i8"), np.frombuffer(wire.sums, "<f8"), np.frombuffer(wire.squares, "<f8"),
        np.frombuffer(wire.counts, "<i8"), wire.names)


def chunks(message: ItemTotalsMessage) -> list[ItemTotalsMessage]:
    """``message`` split into messages below Kafka's default size limit (at least one).

    >>> import numpy as np
    >>> codes = np.arange(40_000)
    >>> big = ItemTotalsMessage("v", 0, 0, 9, -1, True, codes, codes * 1.0, codes * 1.0, codes, {})
    >>> [len(part.codes) for part in chunks(big)]
    [16384, 16384, 7232]
    """
    if message.names:  # cut where the items or their names fill a message
        cuts, names = [0], 0
        for at, code in enumerate(message.codes.tolist()):
            size = 4 * len(message.names.get(code, ""))  # UTF-8: at most 4 bytes a character
            if at > cuts[-1] and (at - cuts[-1] >= CHUNK_ITEMS or names + size > NAME_BYTES):
                cuts.append(at)
                names = 0
            names += size
    else:
        cuts = list(range(0, max(len(message.codes), 1), CHUNK_ITEMS))
    cuts.append(len(message.codes))
    return [message._replace(
        codes=message.codes[a:b], sums=message.sums[a:b], squares=message.squares[a:b], counts=message.counts[a:b],
        names={code: message.names[code] for code in message.codes[a:b].tolist() if code in message.names})
        for a, b in pairwise(cuts)]
