"""Approximate maximum-inner-product search over a version's items, for top-k on large catalogs.

    score(u, x) = μ + b_x + V_x · w[:-1] + w[-1]  =  const(u) + [V_x, b_x] · [w[:-1], 1]

so ranking a user's items is a maximum inner product search over the rows ``y_x = [V_x, b_x]``
with the query ``q = [w[:-1], 1]``. The index is an inverted file (faiss ``IndexIVFFlat``,
inner product): k-means cells over the rows; a query scans the rows of the ``breadth`` cells
whose centroids have the largest inner product with it, exactly. bench/topk.py measured it
against graph indexes (hnswlib, usearch, Voyager, faiss HNSW) and ScaNN on the same catalog, and
ScaNN again on the large catalog with the same corrections; bench/README.md has the figures.

The index holds the version *as trained*; the edge serves it with item corrections (biases moved,
items appended, ``velox.model.corrections``) that change every second or so, and the index is
never rebuilt for them. A query therefore takes more candidates than k from the index and
rescores them exactly with the served biases; then two sets the index cannot know are ranked
exactly beside them:

* items whose correction raised them: an item outside the candidates scores at most
  ``t + Δ_x`` (``t`` the lowest trained score among the candidates, ``Δ_x`` its correction), so
  only those with ``Δ_x`` above the gap between the k-th served score and ``t`` can enter; they
  are kept sorted by ``Δ_x`` per served table, their factors copied contiguously in that order,
  so a query scores its prefix in one product (no gather) and only rows reaching the k-th
  score join the candidates.
* appended items with zero factors (rated, unknown to the version): their score is their bias plus
  the user's, the same order for every user, so the k best of them by bias are enough.
* appended items with factors (described by content, ``velox.serving.item_content``): new items,
  few beside the catalog, each scored exactly.

Excluded items (``exclude_seen``) are removed exactly, after taking that many more candidates.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass

import faiss
import numpy as np

from velox.model.top_k import TopK
from velox.model.version import ModelVersion

INDEX_ITEMS = 100_000  # catalogs from this size get an index (bench/topk.py: where it is at least 4x as fast)
BREADTH = 48  # cells scanned per query: the default bench/topk.py chose for recall@10 ≥ 0.95
EXTRA = 50  # candidates taken beyond k, so corrections near the k-th rank have room
SAMPLE_PER_CELL = 64  # k-means training rows per cell

faiss.omp_set_num_threads(1)  # a search is one request's: on the edge's event loop, not across every core


def cells_for(n: int) -> int:
    """Cells of the inverted file: about 4·√n (faiss's guidance), at least 39 rows each."""
    return max(1, min(int(4 * math.sqrt(n)), n // 39))


def rows_of(version: ModelVersion) -> np.ndarray:
    """``[V_x, b_x]`` for each item, float32: what the index searches."""
    return np.ascontiguousarray(np.hstack([version.item_factors, version.item_bias[:, None]]), np.float32)


@dataclass
class _Served:
    """What one served item table adds to the trained one: raised rows (by Δ, descending) with
    their factors and served bases copied in that order, so a query's prefix of them is one
    product over contiguous rows rather than a gather; appended rows (by bias, descending)."""

    table: np.ndarray  # the served item_bias this was computed from (kept, so its id stays unique)
    raised: np.ndarray
    lowered_by: np.ndarray  # -Δ of the raised rows, ascending: a query's prefix is one searchsorted
    raised_factors: np.ndarray
    raised_base: np.ndarray
    appended: np.ndarray  # appended rows with zero factors, by bias
    described: np.ndarray  # appended rows with factors (mapped from content)


class ItemIndex:
    """An inverted-file MIPS index over a trained version's ``[V_x, b_x]`` rows."""

    def __init__(self, index: faiss.Index, trained_bias: np.ndarray, breadth: int = BREADTH) -> None:
        self.index, self.trained_bias, self.n = index, trained_bias, index.ntotal
        self.breadth = breadth
        self._served: list[_Served] = []
        self._lock = threading.Lock()

    @classmethod
    def build(cls, version: ModelVersion, breadth: int = BREADTH, threads: int | None = None) -> ItemIndex:
        """Train the cells on a sample of the rows (fixed seed: the same version gives the same index)."""
        y = rows_of(version)
        cells = cells_for(len(y))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(y.shape[1]), y.shape[1], cells, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = 1234
        sample = y if len(y) <= SAMPLE_PER_CELL * cells else y[
            np.random.default_rng(0).choice(len(y), SAMPLE_PER_CELL * cells, replace=False)]
        faiss.omp_set_num_threads(threads or os.cpu_count() or 1)
        try:
            index.train(sample)
            index.add(y)
        finally:
            faiss.omp_set_num_threads(1)
        return cls(index, version.item_bias, breadth)

    def covers(self, version: ModelVersion) -> bool:
        """Whether ``version`` is the indexed one or made from it by the corrections (rows appended)."""
        return len(version.item_ids) >= self.n

    def to_bytes(self) -> bytes:
        return faiss.serialize_index(self.index).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, version: ModelVersion, breadth: int = BREADTH) -> ItemIndex:
        """The index saved for ``version``; refused if it does not cover that version's items."""
        index = faiss.deserialize_index(np.frombuffer(data, np.uint8))
        if index.ntotal != len(version.item_ids) or index.d != version.d:
            raise ValueError(f"index of {index.ntotal} items, d = {index.d}, is not version {version.id}'s "
                             f"({len(version.item_ids)} items, d = {version.d})")
        return cls(index, version.item_bias, breadth)

    def memory_bytes(self) -> int:
        """What the index holds: its rows, their ids and the centroids (the trained biases are the version's)."""
        return self.n * (self.index.d * 4 + 8) + self.index.nlist * self.index.d * 4

    def search(self, queries: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``count`` best rows for each query (rows of ``[w[:-1], 1]``) and their trained inner
        products; -1 where fewer were found."""
        self.index.nprobe = self.breadth
        found, rows = self.index.search(np.ascontiguousarray(queries, np.float32), count)
        return rows, found

    def top_k(self, version: ModelVersion, w: np.ndarray, k: int, exclude: np.ndarray | None = None,
              epsilon: float = 0.0, rng: np.random.Generator | None = None) -> TopK:
        """``top_k`` over the whole served catalog of ``version`` (the trained one or its corrections)."""
        return self.top_k_many(version, np.asarray(w)[None, :], [k], exclude, epsilon, rng)[0]

    def top_k_many(self, version: ModelVersion, weights: np.ndarray, ks: list[int],
                   exclude: np.ndarray | None = None, epsilon: float = 0.0,
                   rng: np.random.Generator | None = None) -> list[TopK]:
        """One index search for the batch, then each answer rescored exactly (see the module)."""
        weights = np.asarray(weights, np.float32)
        excluded = 0 if exclude is None else len(exclude)
        count = min(max(ks) + EXTRA + excluded, self.n)
        queries = np.hstack([weights[:, :-1], np.ones((len(weights), 1), np.float32)])
        rows, found = self.search(queries, count)
        served = self.served_table(version)
        return [self._rescore(version, served, w, k, r[r >= 0], f[r >= 0], exclude, epsilon, rng)
                for w, k, r, f in zip(weights, ks, rows, found)]

    def _rescore(self, version: ModelVersion, served: _Served, w: np.ndarray, k: int, rows: np.ndarray,
                 trained: np.ndarray, exclude: np.ndarray | None, epsilon: float,
                 rng: np.random.Generator | None) -> TopK:
        excluding = exclude is not None and len(exclude) > 0
        rows = np.concatenate([rows, served.described, served.appended[:k + (len(exclude) if excluding else 0)]])
        if excluding:
            rows = rows[~np.isin(version.item_ids[rows], exclude)]
        scores = self._scores(version, w, rows)
        if len(served.raised) and len(trained):
            kth = np.partition(scores, len(scores) - k)[len(scores) - k] if len(scores) > k else -np.inf
            floor = float(trained.min()) + float(version.global_mean) + float(w[-1])  # t, in served units
            prefix = int(np.searchsorted(served.lowered_by, floor - kth, side="left"))  # Δ_x > kth - t
            if prefix:
                raised = served.raised_factors[:prefix] @ w[:-1]
                raised += served.raised_base[:prefix]
                raised += w[-1]
                entering = np.flatnonzero(raised >= kth)  # the others cannot be among the k best
                more = served.raised[entering]
                few = len(more) * len(rows) <= 1 << 16  # usually a handful enter: comparing beats isin's sorts
                keep = ~((more[:, None] == rows).any(axis=1) if few else np.isin(more, rows))
                if excluding:
                    keep &= ~np.isin(version.item_ids[more], exclude)
                rows, scores = np.concatenate([rows, more[keep]]), np.concatenate([scores, raised[entering[keep]]])
        k = min(k, len(rows))
        best = np.argpartition(scores, len(rows) - k)[len(rows) - k:] if 0 < k < len(rows) else np.arange(k)
        best = best[np.argsort(-scores[best], kind="stable")]
        rows, scores, explored = rows[best], scores[best], [False] * k
        if epsilon > 0 and len(version.item_ids) > k:
            rows, scores, explored = self._explore(version, w, rows, scores, exclude, epsilon, rng)
        return TopK(version.item_ids[rows].tolist(), scores.tolist(), explored)

    @staticmethod
    def _scores(version: ModelVersion, w: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The served scores of ``rows`` (float32, like the exact path)."""
        scores = version.item_factors[rows] @ w[:-1]
        scores += version.item_base[rows]
        scores += w[-1]
        return scores

    def _explore(self, version: ModelVersion, w: np.ndarray, rows: np.ndarray, scores: np.ndarray,
                 exclude: np.ndarray | None, epsilon: float,
                 rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray, list[bool]]:
        """ε-greedy as in ``top_k``: each slot, with probability ε, a random other item of the catalog."""
        rng = rng or np.random.default_rng()
        explored = [False] * len(rows)
        swaps = np.flatnonzero(rng.random(len(rows)) < epsilon)
        if not len(swaps):
            return rows, scores, explored
        taken, rows, scores = set(rows.tolist()), rows.copy(), scores.copy()
        for slot in swaps.tolist():
            for _ in range(100):  # a catalog this size has other items; excluded ones are redrawn
                row = int(rng.integers(len(version.item_ids)))
                if row not in taken and (exclude is None or version.item_ids[row] not in exclude):
                    break
            else:
                continue
            taken.add(row)
            rows[slot] = row
            scores[slot] = self._scores(version, w, np.array([row]))[0]
            explored[slot] = True
        return rows, scores, explored

    def served_table(self, version: ModelVersion) -> _Served:
        """Raised and appended rows of the served item table: computed once per table (the edge's
        corrections publish a new one at most every second, and compute it then, off the request
        path), the last two kept."""
        with self._lock:
            for served in self._served:
                if served.table is version.item_bias:
                    return served
        delta = version.item_bias[:self.n].astype(np.float32) - self.trained_bias
        raised = np.flatnonzero(delta > 0)
        raised = raised[np.argsort(-delta[raised], kind="stable")]
        appended = np.arange(self.n, len(version.item_ids))
        described = version.item_factors[appended].any(axis=1)
        appended, described = appended[~described], appended[described]
        appended = appended[np.argsort(-version.item_bias[appended], kind="stable")]
        served = _Served(version.item_bias, raised, -delta[raised], np.ascontiguousarray(version.item_factors[raised]),
                         version.item_base[raised], appended, described)
        with self._lock:
            self._served = [served, *self._served[:1]]
        return served


def attach(version: ModelVersion, index: ItemIndex | None) -> ModelVersion:
    """Serve ``version``'s top-k through ``index``; versions made from it by ``with_items`` (the
    item corrections, which only move biases and append rows) carry it along."""
    object.__setattr__(version, "item_index", index)
    return version


def index_of(version: ModelVersion) -> ItemIndex | None:
    """The version's index, if it has one that covers its items."""
    index: ItemIndex | None = version.item_index
    return index if index is not None and index.covers(version) else None


def build_for(version: ModelVersion, min_items: int = INDEX_ITEMS, breadth: int = BREADTH) -> ItemIndex | None:
    """An index for ``version`` if its catalog is large enough to need one."""
    return ItemIndex.build(version, breadth) if len(version.item_ids) >= min_items else None
