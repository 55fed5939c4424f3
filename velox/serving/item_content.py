"""Items described by content at the edge: the items' attributes as the edge follows them (the
``items`` topic, ``velox.control.items``), and each version's table extended with the items it did
not train on but whose attributes are known, at the factors and bias its content model maps them
to (``velox.model.content``).

The retrain already appended the items whose attributes it knew (``velox.batch.job.with_content``:
the workers learn on those rows); an item announced on ``items`` after the version is scored by
content once the table is rebuilt (``velox.serving.live_corrections`` does it within a second of
the change); changed attributes are mapped again, a row the retrain appended replaced. Per version, each item's mapped row is kept with the attributes it came from, so a
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
    codes: frozenset[int]  # every item the table scores by content
    table: ModelVersion  # the version with these items' rows


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
        """``version`` (as trained) with every item it did not train on but whose attributes are known
        at its mapped factors and bias: appended, or (an item described at the retrain whose
        attributes changed since) its row replaced; ``version`` itself when it has no content model."""
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
            at = version.items.rows(codes)
            trained = len(version.item_ids) if version.trained_items is None else version.trained_items
            wanted = {keys[i]: int(at[i]) for i in np.flatnonzero(at >= trained).tolist()}
            found = {key: kept[key] for key in wanted if key in kept and kept[key][0] is rows[key]}
            fresh = [key for key in wanted if key not in found]
            factors, bias = model.map([rows[key] for key in fresh])
            found.update({key: (rows[key], factors[i], float(bias[i])) for i, key in enumerate(fresh)})
            table = self._table(version, found, wanted)
            self._mapped[version.id] = _Mapped(changes, found, frozenset(codes[at >= trained].tolist()), table)
            for gone in list(self._mapped)[:-4]:  # the versions an edge serves at once, and some
                del self._mapped[gone]
            return table

    @staticmethod
    def _table(version: ModelVersion, found: dict[str, tuple[Attributes, np.ndarray, float]],
               at: dict[str, int]) -> ModelVersion:
        """``version`` with the rows of ``found`` (by key; ``at``: each one's row, past the end if none)."""
        n, d = len(version.item_ids), version.d
        inside, outside = [key for key in found if at[key] < n], [key for key in found if at[key] >= n]
        if inside:
            rows = np.array([at[key] for key in inside])
            factors = np.array([found[key][1] for key in inside], np.float32).reshape(len(inside), d - 1)
            bias = np.array([found[key][2] for key in inside], np.float32)
            if not (np.allclose(version.item_factors[rows], factors, atol=1e-6)
                    and np.allclose(version.item_bias[rows], bias, atol=1e-6)):
                replaced_factors, replaced_bias = version.item_factors.copy(), version.item_bias.copy()
                replaced_factors[rows], replaced_bias[rows] = factors, bias
                version = version.with_items(version.item_ids, replaced_factors, replaced_bias)
        given = [ids.given(key) for key in outside]
        codes = np.fromiter((ids.code(item) for item in given), np.int64, len(given))
        names = {int(code): item for code, item in zip(codes.tolist(), given) if isinstance(item, str)}
        factors = np.array([found[key][1] for key in outside], np.float32).reshape(len(outside), d - 1)
        return version.appended(codes, factors, [found[key][2] for key in outside], names)

    def close(self) -> None:
        self.table.close()
