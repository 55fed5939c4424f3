"""Rows of ids in an array of int64 ids: their sorted copy and each one's row, built once.

A version's users and items are looked up by id. A Python dict over them cost seconds and
hundreds of megabytes at millions of users (one object per id); a sort is vectorized, and a
batch of ids then finds its rows with one ``searchsorted``, in time that grows with the batch
(and the logarithm of the ids), never with all of them. Ids stored sorted (a sorted range) need no
order at all.

One id at a time (the edge's predict, the worker's event) a ``searchsorted`` costs microseconds of
numpy's call overhead, ten times a dict's lookup: a table of up to ``ROW_TABLE_MAX`` ids (an item
catalog, a small system's users; a few tens of megabytes at most) also keeps a dict for ``row``.

>>> lookup = Lookup(np.array([30, 10, 20]))
>>> lookup.rows(np.array([20, 99, 30])).tolist()  # absent: the number of ids (a row past the end)
[2, 3, 0]
>>> lookup.row(10), lookup.row(11)
(1, -1)
>>> lookup.extended(np.array([30, 10, 20, 15])).rows(np.array([15, 20])).tolist()
[3, 2]
"""

from __future__ import annotations

import numpy as np

ROW_TABLE_MAX = 1 << 18  # ids kept in a dict for one-id lookups as well


class Lookup:
    """``ids`` (int64, distinct, any order) to their rows."""

    def __init__(self, ids: np.ndarray, ordered: tuple[np.ndarray, np.ndarray | None] | None = None,
                 table: dict[int, int] | None = None) -> None:
        self.ids = ids
        if ordered is None:
            ordered = (ids, None) if bool(np.all(ids[1:] > ids[:-1])) else _sorted(ids)
        self.sorted, self.order = ordered  # order None: ids are sorted, each id's row is its place
        if table is None and len(ids) <= ROW_TABLE_MAX:
            table = dict(zip(ids.tolist(), range(len(ids))))
        self.table = table  # id → row, for small tables

    def rows(self, wanted: np.ndarray) -> np.ndarray:
        """The row of each of ``wanted`` (int64), or ``len(ids)`` where it is absent."""
        n = len(self.ids)
        if n == 0:
            return np.zeros(len(wanted), np.int64)
        place = np.minimum(self.sorted.searchsorted(wanted), n - 1)
        found = self.sorted[place] == wanted
        rows = place if self.order is None else self.order[place]
        return np.where(found, rows, n)

    def row(self, wanted: int) -> int:
        """The row of one id, or -1: the edge's and the learner's per-request lookup."""
        if self.table is not None:
            return self.table.get(wanted, -1)
        place = self.sorted.searchsorted(wanted)
        if place == len(self.sorted) or self.sorted.item(place) != wanted:
            return -1
        return int(place) if self.order is None else self.order.item(place)

    def extended(self, ids: np.ndarray) -> Lookup:
        """The lookup of ``ids``, which begin with this one's: the sorted copy merged with the few
        added after them, not sorted again (the edge's item corrections add items every second or so)."""
        n = len(self.ids)
        added = ids[n:]
        if not len(added):
            return Lookup(ids, (self.sorted, self.order), self.table)
        added_order = np.argsort(added, kind="stable")
        at = self.sorted.searchsorted(added[added_order])
        order = np.arange(n) if self.order is None else self.order
        table = None
        if self.table is not None and len(ids) <= ROW_TABLE_MAX:  # a copy, not built again
            table = self.table.copy()
            table.update(zip(added.tolist(), range(n, len(ids))))
        return Lookup(ids, (np.insert(self.sorted, at, added[added_order]), np.insert(order, at, n + added_order)),
                      table)


def _sorted(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(ids, kind="stable")
    return ids[order], order
