"""A lookup answers the same rows whether it keeps a dict (small tables) or searches its sorted ids
(large ones), before and after ids are appended."""

from __future__ import annotations

import numpy as np
import pytest

from velox.model import lookup
from velox.model.lookup import Lookup


@pytest.mark.parametrize("table_max", [0, 1 << 18], ids=["searched", "dict"])
def test_one_id_and_a_batch_find_the_same_rows_on_either_path(monkeypatch: pytest.MonkeyPatch, table_max: int) -> None:
    monkeypatch.setattr(lookup, "ROW_TABLE_MAX", table_max)
    rng = np.random.default_rng(5)
    ids = rng.choice(np.arange(-5_000, 5_000), 2_000, replace=False).astype(np.int64)
    found = Lookup(ids[:1_500]).extended(ids)
    assert (found.table is None) == (table_max == 0)
    wanted = rng.integers(-6_000, 6_000, 3_000)
    batch = found.rows(wanted)
    one = np.array([found.row(int(w)) for w in wanted])
    np.testing.assert_array_equal(np.where(one < 0, len(ids), one), batch)
    assert (one >= 0).sum() > 300 and all(ids[found.row(int(i))] == i for i in ids[1_500:])
