"""A model version: the shared item features θ and what a user starts from.

    score(u, x) = μ + b_x + w_u · f(x),   f(x) = [V_x, 1]

``V_x`` is the item's factor row (float32, rank ``d - 1``), ``b_x`` its bias and μ the global
mean. Users and items are rows looked up by their ids' 64-bit codes (``velox.schemas.ids``);
``names`` keeps the strings of the codes that are hashes, so ids go back out as they were given. The last coordinate of ``w_u`` is the user's bias. An item the version does not know has
``V_x = 0`` and ``b_x = 0``, so its observations still move the user's bias; where its attributes
are known, the edge serves it with what the version's content model maps them to (``content``,
``velox.model.content``). A user the version
does not know starts from the mean user vector (cold start).
"""

from __future__ import annotations

import copy
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from velox.model.content import ContentModel
from velox.model.lookup import Lookup
from velox.schemas import ids, partitioning

HOMES_CHUNK = 1 << 20


@dataclass(frozen=True, eq=False)
class ModelVersion:
    """Arrays are read-only after construction; ``items`` and ``users`` find ids' rows (``velox.model.lookup``)."""

    id: str
    global_mean: float
    item_ids: np.ndarray  # int64[n_items]
    item_factors: np.ndarray  # float32[n_items, d - 1]
    item_bias: np.ndarray  # float32[n_items]
    user_ids: np.ndarray  # int64[n_users]
    user_vectors: np.ndarray  # float32[n_users, d]
    user_counts: np.ndarray  # int64[n_users]: each user's observations in the training set
    names: Mapping[int, str] = field(default_factory=dict)  # code → string, for ids that are not integers
    # An implicit version's training interactions, by user row (CSR): each user's items, and each
    # item's summed confidence, negative where none of them was a positive kind (velox.model.implicit).
    interactions: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # int64 offsets, int64 items, f64
    # Factors and bias from an item's attributes, for items it did not train on (velox.model.content).
    content: ContentModel | None = None
    # Rows from here on are items described by content when the version was made (their attributes
    # known then, no rating in its training set): the worker learns on their mapped factors. None: all trained.
    trained_items: int | None = None
    mean_user: np.ndarray = field(init=False)  # float32[d]
    item_base: np.ndarray = field(init=False, repr=False)  # float32[n_items]: μ + b_item, for top-k
    users: Lookup = field(init=False, repr=False)  # user ids to rows
    items: Lookup = field(init=False, repr=False)  # item ids to rows
    item_index: Any = field(default=None, init=False, repr=False)  # velox.model.index.attach: top-k on large catalogs

    def __post_init__(self) -> None:
        d = self.item_factors.shape[1] + 1
        mean = self.user_vectors.mean(axis=0) if len(self.user_ids) else np.zeros(d)
        object.__setattr__(self, "mean_user", mean.astype(np.float32))
        object.__setattr__(self, "users", Lookup(self.user_ids))
        for array in (self.user_ids, self.user_vectors, self.user_counts, self.mean_user):
            array.setflags(write=False)
        self._index_items(Lookup(self.item_ids))

    def _index_items(self, items: Lookup) -> None:
        object.__setattr__(self, "item_base", (self.global_mean + self.item_bias).astype(np.float32))
        object.__setattr__(self, "items", items)
        for array in (self.item_ids, self.item_factors, self.item_bias, self.item_base):
            array.setflags(write=False)

    def with_items(self, item_ids: np.ndarray, item_factors: np.ndarray, item_bias: np.ndarray,
                   names: Mapping[int, str] | None = None) -> ModelVersion:
        """The same version (id, users) over another item table, the users' lookups shared rather
        than built again: the edge's item corrections replace the table every second or so, and
        building a million users' lookups would hold the edge's GIL for a long while each time.
        The items' lookup is shared too when ``item_ids`` is this version's, and extended when it
        is theirs with ids appended.

        >>> version = random_version(3, 2)
        >>> other = version.with_items(version.item_ids[:1], version.item_factors[:1], version.item_bias[:1] + 1)
        >>> other.id == version.id, other.knows_item(2), float(other.item_base[0]) == float(version.item_base[0]) + 1
        (True, False, True)
        """
        other = copy.copy(self)
        for name, value in (("item_ids", item_ids), ("item_factors", item_factors), ("item_bias", item_bias)):
            object.__setattr__(other, name, value)
        if names:
            object.__setattr__(other, "names", {**self.names, **names})
        n = len(self.item_ids)
        extends = len(item_ids) >= n and np.array_equal(item_ids[:n], self.item_ids)
        other._index_items(self.items.extended(item_ids) if extends else Lookup(item_ids))
        return other

    def appended(self, item_ids: np.ndarray, item_factors: np.ndarray, item_bias: np.ndarray,
                 names: Mapping[int, str] | None = None) -> ModelVersion:
        """The same version with items appended after its own (its lookups extended, not rebuilt):
        items described by content (``velox.serving.item_content``)."""
        if not len(item_ids):
            return self
        return self.with_items(np.concatenate([self.item_ids, item_ids]),
                               np.vstack([self.item_factors, np.asarray(item_factors, np.float32)]),
                               np.concatenate([self.item_bias, np.asarray(item_bias, np.float32)]), names)

    def described(self, attributes: Mapping[int, Mapping[str, Any]], names: Mapping[int, str] | None = None
                  ) -> ModelVersion:
        """The version with every item of ``attributes`` (by code) it has no row for appended, at the
        factors and bias its content model maps them to (``names``: the string ids of such codes)."""
        assert self.content is not None, "a version describes items by its content model"
        codes = np.array([code for code in attributes if not self.knows_item(code)], np.int64)
        factors, bias = self.content.map([attributes[code] for code in codes.tolist()])
        return self.appended(codes, factors, bias, names)

    def named(self, names: Mapping[int, str]) -> ModelVersion:
        """The same version with ``names`` for its string ids' codes (the retrain adds them once fitted)."""
        other = copy.copy(self)
        object.__setattr__(other, "names", {**self.names, **names})
        return other

    def id_of(self, code: int) -> int | str:
        """The id of a user or item code, as it was given (an integer id is its own code)."""
        return code if code >= 0 else self.names[code]

    def key_of(self, code: int) -> bytes:
        """A user's Kafka key: their id's UTF-8 bytes."""
        return ids.key(self.id_of(code))

    def user_keys(self, rows: np.ndarray) -> np.ndarray:
        """The Kafka keys of the users at ``rows``, as a ``bytes_`` array: made in numpy, not a Python
        step per user (a swap takes a partition's hundreds of thousands of users a chunk at a time).

        >>> version = ModelVersion("v", 0.0, np.zeros(0, np.int64), np.zeros((0, 1), np.float32), np.zeros(0, np.float32),
        ...                        np.array([21, -5]), np.zeros((2, 2), np.float32), np.zeros(2, np.int64), {-5: "abc"})
        >>> version.user_keys(np.array([1, 0])).tolist()
        [b'abc', b'21']
        """
        codes = self.user_ids[rows]
        numbers = codes >= 0  # an integer id's key is its decimal string
        if numbers.all():
            return codes.astype(np.bytes_)
        named = np.array([ids.key(self.names[code]) for code in codes[~numbers].tolist()], np.bytes_)
        keys = np.empty(len(codes), f"S{max(named.dtype.itemsize, 20)}")
        keys[numbers] = codes[numbers].astype(np.bytes_)
        keys[~numbers] = named
        return keys

    def user_homes(self, partitions: int) -> np.ndarray:
        """Each user's home partition (int16, by row): a swap groups a version's users by partition
        without a Python step per user.

        >>> version = ModelVersion("v", 0.0, np.zeros(0, np.int64), np.zeros((0, 1), np.float32), np.zeros(0, np.float32),
        ...                        np.array([21, -5]), np.zeros((2, 2), np.float32), np.zeros(2, np.int64), {-5: "abc"})
        >>> version.user_homes(8).tolist() == [partitioning.home(b"21", 8), partitioning.home(b"abc", 8)]
        True
        """
        homes = np.empty(len(self.user_ids), np.int16)
        for start in range(0, len(homes), HOMES_CHUNK):  # the keys' bytes a chunk at a time
            rows = np.arange(start, min(start + HOMES_CHUNK, len(homes)))
            homes[rows] = partitioning.homes(self.user_keys(rows), partitions)
        return homes

    @property
    def d(self) -> int:
        return self.item_factors.shape[1] + 1

    def knows_item(self, item: int) -> bool:
        """Whether the item has a row: trained, or described by content (``features_of`` tells which)."""
        return self.items.row(item) >= 0

    def features_of(self, item: int) -> str:
        """What the item's row is: ``trained`` (the training set rated it), ``content`` (mapped from its
        attributes when the version was made), or ``none`` (no row: zero factors)."""
        row = self.items.row(item)
        if row < 0:
            return "none"
        return "trained" if row < (len(self.item_ids) if self.trained_items is None else self.trained_items) \
            else "content"

    def as_trained(self) -> ModelVersion:
        """The version without the rows described by content: what it knows from ratings alone."""
        n = self.trained_items
        if n is None or n == len(self.item_ids):
            return self
        return self.with_items(self.item_ids[:n], self.item_factors[:n], self.item_bias[:n])

    def knows_user(self, user: int) -> bool:
        return self.users.row(user) >= 0

    def training_count(self, user: int) -> int:
        """The user's observations in the training set (0 for a user the version does not know)."""
        row = self.users.row(user)
        return 0 if row < 0 else int(self.user_counts[row])

    def features_many(self, items: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """f(item) for each item as rows of float64, and each item's bias; an unknown item has
        zeros but the bias coordinate, and a zero bias."""
        rows = self.items.rows(np.fromiter(items, np.int64, len(items)))
        unknown = rows == len(self.item_ids)
        if unknown.all():
            return np.tile(np.eye(self.d)[-1], (len(items), 1)), np.zeros(len(items))
        # Taken whole (an unknown item as row 0, then cleared): masks cost more.
        rows[unknown] = 0
        f = np.empty((len(items), self.d))
        f[:, :-1] = self.item_factors[rows]
        f[:, -1] = 1.0
        bias = self.item_bias[rows].astype(np.float64)
        if unknown.any():
            f[unknown, :-1] = 0.0
            bias[unknown] = 0.0
        return f, bias

    def trained_interactions(self, user: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The user's training interactions (items, signed summed confidences), if the version keeps them."""
        if self.interactions is None:
            return None
        row = self.users.row(user)
        if row < 0:
            return None
        offsets, items, weights = self.interactions
        return items[offsets[row]:offsets[row + 1]], weights[offsets[row]:offsets[row + 1]]

    def prior(self, user: int) -> np.ndarray:
        """Where a user's weights start: their trained vector, or the mean user if unknown."""
        row = self.users.row(user)
        return self.mean_user if row < 0 else self.user_vectors[row]

    def score(self, w: np.ndarray, item: int) -> float:
        """μ + b_item + w · f(item), without building f (this is the edge's hot path)."""
        row = self.items.row(item)
        if row < 0:
            return self.global_mean + float(w[-1])
        return self.global_mean + float(self.item_bias[row]) + float(self.item_factors[row] @ w[:-1]) + float(w[-1])

    def to_npz(self) -> bytes:
        """The arrays as one ``.npz`` (no pickled objects)."""
        out = io.BytesIO()
        np.savez(
            out, id=np.array(self.id), global_mean=np.array(self.global_mean),
            item_ids=self.item_ids, item_factors=self.item_factors, item_bias=self.item_bias,
            user_ids=self.user_ids, user_vectors=self.user_vectors, user_counts=self.user_counts,
            name_codes=np.fromiter(self.names, np.int64, len(self.names)),
            # Ids hold no control characters: a line feed separates them.
            name_text=np.frombuffer("\n".join(self.names.values()).encode(), np.uint8),
            **({} if self.interactions is None else dict(zip(_INTERACTIONS, self.interactions))),
            **({} if self.content is None else self.content.to_arrays()),
            **({} if self.trained_items is None else {"trained_items": np.array(self.trained_items)}),
        )
        return out.getvalue()

    @classmethod
    def from_npz(cls, data: bytes | BinaryIO) -> ModelVersion:
        """The version of ``to_npz``'s bytes, or of a file holding them (read an array at a time)."""
        with np.load(io.BytesIO(data) if isinstance(data, bytes) else data, allow_pickle=False) as arrays:
            names = {}  # (none in a version saved before ids were strings)
            if "name_codes" in arrays and len(arrays["name_codes"]):
                names = dict(zip(arrays["name_codes"].tolist(), arrays["name_text"].tobytes().decode().split("\n")))
            return cls(
                id=str(arrays["id"]), global_mean=float(arrays["global_mean"]),
                item_ids=arrays["item_ids"], item_factors=arrays["item_factors"], item_bias=arrays["item_bias"],
                user_ids=arrays["user_ids"], user_vectors=arrays["user_vectors"], user_counts=arrays["user_counts"],
                names=names,
                interactions=tuple(arrays[name] for name in _INTERACTIONS) if _INTERACTIONS[0] in arrays else None,
                content=ContentModel.from_arrays(arrays),
                trained_items=int(arrays["trained_items"]) if "trained_items" in arrays else None,
            )


_INTERACTIONS = ("interaction_offsets", "interaction_items", "interaction_weights")


def random_version(n_items: int, d: int, seed: int = 0, global_mean: float = 0.0) -> ModelVersion:
    """The version a worker starts from before any training: small random item factors, no users.

    Deterministic in its arguments, so every process (and a test's reference replay) that asks
    for the same initial version gets the same θ.
    """
    rng = np.random.default_rng(seed)
    return ModelVersion(
        id=f"initial-{n_items}x{d}-seed{seed}",
        global_mean=global_mean,
        item_ids=np.arange(n_items, dtype=np.int64),
        item_factors=rng.normal(0.0, 1.0 / np.sqrt(d), size=(n_items, d - 1)).astype(np.float32),
        item_bias=np.zeros(n_items, dtype=np.float32),
        user_ids=np.zeros(0, dtype=np.int64),
        user_vectors=np.zeros((0, d), dtype=np.float32),
        user_counts=np.zeros(0, dtype=np.int64),
    )
