"""Items described by content at the edge: the items' attributes as the edge follows them (the
``items`` topic, ``velox.control.items``), and each version's table extended with the items it did
not train on but whose attributes are known, at the factors and bias its content model maps them
to (``velox.model.content``).

An item announced on ``items`` after the version is scored by content once the table is rebuilt
(``velox.serving.live_corrections`` does it within a second of the change); changed attributes are
mapped again. Per version, each item's mapped row is kept with the attributes it came from, so a
change maps only the items whose attributes changed (the followed table replaces a changed item's
attributes by a new object and keeps the others). An item the version trained on keeps its own
factors: the retrain that sees its ratings replaces the mapped ones.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np

from velox.control import items
from velox.model.version import ModelVersion
from velox.schemas import ids
from velox.schemas.item_attributes import Attributes
from velox.settings import Settings


class _Mapped(NamedTuple):
    """One version's items described by content, by their key's text."""

    changes: int  # the items table's changes it was built at
    rows: dict[str, tuple[Attributes, np.ndarray, float]]  # key → (attributes, factors, bias)
    codes: frozenset[int]
    table: ModelVersion  # the version with these items appended


class ItemContent:
    """Every item's attributes, kept current by a thread; versions' tables extended with them."""

    def __init__(self, settings: Settings) -> None:
        self.table = items.follow(settings)
        self._mapped: dict[str, _Mapped] = {}  # by version id
        self._lock = threading.Lock()

    @property
    def changes(self) -> int:
        """Changes of the items table so far: a version's table is rebuilt when they move."""
        return self.table.changes

    def attributes(self, item: int | str) -> Attributes | None:
        """The item's attributes as the topic says now (keys are the ids' text)."""
        return self.table.rows.get(str(item))

    def mapped(self, version_id: str, item: int) -> bool:
        """Whether the version's served table scores ``item`` (a code) by its content."""
        found = self._mapped.get(version_id)
        return found is not None and item in found.codes

    def applied(self, version: ModelVersion) -> ModelVersion:
        """``version`` (as trained) with the items it did not train on but whose attributes are known
        appended at their mapped factors and bias; ``version`` itself when it has no content model."""
        model = version.content
        if model is None:
            return version
        changes, rows = self.table.changes, self.table.rows  # (the thread replaces the dict, never changes it)
        with self._lock:
            before = self._mapped.get(version.id)
            if before is not None and before.changes == changes:
                return before.table
            kept = {} if before is None else before.rows
            keys = list(rows)
            codes = np.fromiter((ids.code(ids.given(key)) for key in keys), np.int64, len(keys))
            new = [key for key, unknown in zip(keys, version.items.rows(codes) == len(version.item_ids)) if unknown]
            found = {key: kept[key] for key in new if key in kept and kept[key][0] is rows[key]}
            fresh = [key for key in new if key not in found]
            factors, bias = model.map([rows[key] for key in fresh])
            found.update({key: (rows[key], factors[i], float(bias[i])) for i, key in enumerate(fresh)})
            table = self._table(version, found)
            self._mapped[version.id] = _Mapped(changes, found, frozenset(table.item_ids[len(version.item_ids):].tolist()),
                                               table)
            for gone in list(self._mapped)[:-4]:  # the versions an edge serves at once, and some
                del self._mapped[gone]
            return table

    @staticmethod
    def _table(version: ModelVersion, found: dict[str, tuple[Attributes, np.ndarray, float]]) -> ModelVersion:
        given = [ids.given(key) for key in found]
        codes = np.fromiter((ids.code(item) for item in given), np.int64, len(given))
        names = {int(code): item for code, item in zip(codes.tolist(), given) if isinstance(item, str)}
        factors = np.array([row[1] for row in found.values()], np.float32).reshape(len(found), version.d - 1)
        return version.appended(codes, factors, [row[2] for row in found.values()], names)

    def close(self) -> None:
        self.table.close()
