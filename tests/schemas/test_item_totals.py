"""The item-totals message: its arrays survive the wire, and a malformed one says why."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from velox.errors import InvalidItemTotals
from velox.schemas import item_totals
from velox.schemas.item_totals import ItemTotalsMessage


def test_a_message_round_trips_with_its_arrays_and_names() -> None:
    rng = np.random.default_rng(0)
    codes = np.concatenate([np.arange(1000), -rng.integers(1, 2**62, 3)])
    message = ItemTotalsMessage("v-2", 5, 120, 4_000, 88, False, codes, rng.normal(size=len(codes)),
                                rng.random(len(codes)), rng.integers(1, 9, len(codes)),
                                {int(code): f"item é {code}" for code in codes[-3:]})
    back = item_totals.decode(item_totals.encode(message))
    assert back[:6] == message[:6] and back.names == message.names
    for name in ("codes", "sums", "squares", "counts"):
        np.testing.assert_array_equal(getattr(back, name), getattr(message, name))


def test_chunks_stay_below_the_message_limit_and_keep_every_item_once() -> None:
    codes = -np.arange(1, 40_001)
    message = ItemTotalsMessage("v", 0, 0, 1, -1, True, codes, np.ones(len(codes)), np.ones(len(codes)),
                                np.ones(len(codes), np.int64), {int(code): "x" * 200 for code in codes})
    parts = item_totals.chunks(message)
    assert all(len(item_totals.encode(part)) < 1_000_000 for part in parts)
    assert np.concatenate([part.codes for part in parts]).tolist() == codes.tolist()
    assert sum(len(part.names) for part in parts) == len(codes)


def test_a_malformed_message_is_refused_with_the_reason() -> None:
    with pytest.raises(InvalidItemTotals, match="not an item-totals message"):
        item_totals.decode(b'{"version": "v"}')
    uneven = msgspec.msgpack.encode(["v", 0, 0, 1, -1, False, b"\0" * 16, b"\0" * 8, b"\0" * 8, b"\0" * 8, {}])
    with pytest.raises(InvalidItemTotals, match="different lengths"):
        item_totals.decode(uneven)
