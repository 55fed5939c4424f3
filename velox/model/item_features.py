"""Item feature functions: an item's attributes (``velox.schemas.item_attributes``) as a vector of
numbers, which the content model (``velox.model.content``) maps to the item's factors and bias.

The default, ``hashed``, gives ``DIM`` numbers: a string attribute (``"genre": "Drama"``) is a one
at the hash of ``genre=Drama`` (one-hot over the attribute's values), each string of a list
(``"tags": ["wool", "red"]``) a one at the hash of ``tags:wool`` (a bag of tags), and a number
three things: the number itself at the hash of its name (the content model standardises each
column over the items it learns from, so a year and a price weigh alike), a one saying it is there
(an item without it has 0 in the first column, which would read as an extreme value: MovieLens's
one item without a year cost the year's whole effect), and a one at the hash of its value to three
significant digits (a year's decade: a step, where the number alone is a slope). Both were chosen
by measurement on MovieLens's genres and years (``velox evaluate --items``; bench/README.md). Hashing needs no vocabulary fitted and kept:
an item with a category no trained item had simply has a column the model never weighted. At
``DIM`` = 2¹⁴, two of a catalog's hundred distinct names collide with a chance of about one in three
hundred (n²/2·DIM).

Any other function can replace it, the way Velox lets a feature function be any computation (an
embedding of the item's text, a pretrained network): ``VELOX_ITEM_FEATURES=module:function``, a
function taking the attributes (a dict) and returning a sequence of floats of the same length for
every item. The retrain learns with it and records its name with the version's content model, and
the edge maps new items with the same one.
"""

from __future__ import annotations

import importlib
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from velox.errors import ConfigError

DIM = 1 << 14
DEFAULT = "velox.model.item_features:hashed"

FeatureFunction = Callable[[Mapping[str, Any]], Sequence[float] | np.ndarray]


def _column(text: str) -> int:
    """A stable hash (the same in every process, unlike ``hash``) into ``DIM`` columns."""
    return zlib.crc32(text.encode()) % DIM


def hashed(attributes: Mapping[str, Any]) -> np.ndarray:
    """The default feature function (see the module).

    >>> v = hashed({"genres": ["Comedy", "Drama"], "year": 1995.0, "brand": "Acme"})
    >>> v.shape, float(v.sum()), float(v[_column("year#")]), float(v[_column("year~1990")])
    ((16384,), 2000.0, 1995.0, 1.0)
    """
    vector = np.zeros(DIM)
    for name, value in attributes.items():
        if isinstance(value, str):
            vector[_column(f"{name}={value}")] = 1.0
        elif isinstance(value, list):
            for tag in value:
                vector[_column(f"{name}:{tag}")] = 1.0
        else:
            vector[_column(f"{name}#")] += float(value)
            vector[_column(f"{name}?")] = 1.0
            vector[_column(f"{name}~{_leading(float(value)):g}")] = 1.0
    return vector


def _leading(value: float, digits: int = 3) -> float:
    """``value`` cut to its first ``digits`` significant digits (toward −∞): its bin.

    >>> _leading(1995.0), _leading(12.99), _leading(0.0)
    (1990.0, 12.9, 0.0)
    """
    if value == 0 or not math.isfinite(value):
        return 0.0
    step = 10.0 ** (math.floor(math.log10(abs(value))) - digits + 1)
    return round(math.floor(value / step) * step, 12)


def resolve(spec: str | None) -> FeatureFunction:
    """The function an entry point ``module:function`` names (None or "": the default)."""
    spec = spec or DEFAULT
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ConfigError(f"item_features {spec!r} is not module:function")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"item_features {spec!r}: {exc}") from None
    if not callable(found):
        raise ConfigError(f"item_features {spec!r} is not a function")
    return found  # type: ignore[no-any-return]


class Sparse:
    """Feature vectors of many items, kept as their non-zero entries: a catalog's default vectors
    are ``DIM`` wide and almost all zeros."""

    def __init__(self, function: FeatureFunction, attributes: Sequence[Mapping[str, Any]]) -> None:
        rows, columns, values, width = [], [], [], None
        for row, given in enumerate(attributes):
            vector = np.asarray(function(given), np.float64)
            if vector.ndim != 1 or (width is not None and len(vector) != width):
                raise ConfigError(f"the item feature function gave a vector of shape {vector.shape} for "
                                  f"{dict(given)!r}, after vectors of {width}: every item's must be as long")
            if not np.isfinite(vector).all():
                raise ConfigError(f"the item feature function gave a value that is not finite for {dict(given)!r}")
            width = len(vector)
            found = np.flatnonzero(vector)
            rows.append(np.full(len(found), row))
            columns.append(found)
            values.append(vector[found])
        self.n, self.width = len(attributes), width or 0
        self.rows, self.columns, self.values = (np.concatenate(part) if part else np.zeros(0)
                                                for part in (rows, columns, values))
        self.rows, self.columns = self.rows.astype(np.int64), self.columns.astype(np.int64)

    def used(self) -> np.ndarray:
        """The columns some item has a non-zero value in, ascending."""
        return np.unique(self.columns)

    def dense(self, columns: np.ndarray) -> np.ndarray:
        """The items' vectors on ``columns`` (ascending) only, as an (items, columns) float64 matrix."""
        out = np.zeros((self.n, len(columns)))
        at = np.searchsorted(columns, self.columns)
        inside = (at < len(columns)) & (columns[np.minimum(at, max(len(columns) - 1, 0))] == self.columns) \
            if len(columns) else np.zeros(len(self.columns), bool)
        out[self.rows[inside], at[inside]] = self.values[inside]
        return out

