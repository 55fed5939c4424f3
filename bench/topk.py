"""Top-k over large catalogs: the index (velox.model.index) against the exact scan, in one run.

1. The candidates, on one catalog (``--compare-items``, planted clustered factors, d = 50, the
   rows ``[V, b]`` searched with ``[w, 1]``): faiss IVF, faiss HNSW, hnswlib, usearch, Voyager and
   ScaNN, each built with 2 threads and asked 60 candidates per query, rescored exactly; recall@10
   against the exact scan, build time, memory (the process's resident growth while building) and
   queries/s (one query at a time).
2. The chosen index in-process at 10,000 and 1,000,000 items: recall@10 against the exact scan with
   item corrections applied (biases moved, items appended), a sweep of its breadth, and the time of
   a request against ``top_k``'s exact scan (one BLAS thread); the same at the default breadth on
   catalogs between (``--crossover``): ``topk_index_items``' default is the smallest of them where
   the index answers at least four times as fast as the scan. Below that the scan costs about what
   the rest of a request does at the edge, so the index would save little there and lose recall.
3. At the edge through HTTP (``velox serve``, its own process), 1,000,000 items: the maximum top-k
   rate, exact and indexed, and the indexed p99 at half its maximum rate.

    python bench/topk.py [--json bench/results/topk.json]

Starts a broker of its own (the edge follows ``model-versions``) and stops it after.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # the exact scan as the issue measured it: one BLAS thread

import faiss  # noqa: E402
import numpy as np  # noqa: E402
from serve import drive, edge, edge_metrics, write_states  # bench/serve.py
from stream import print_checks, write_json  # bench/stream.py

from velox.control import item_corrections, topics, versions
from velox.kafka import clients
from velox.local.broker import throwaway_broker
from velox.model.batch_scores import predict_many
from velox.model.corrections import ItemCorrections
from velox.model.index import BREADTH, ItemIndex, attach, build_for, rows_of
from velox.model.store import ModelStore
from velox.model.synthetic import clustered
from velox.model.top_k import top_k
from velox.model.version import ModelVersion
from velox.schemas import item_totals
from velox.schemas.item_totals import ItemTotalsMessage
from velox.schemas.model_version import VersionInfo
from velox.settings import Settings

D, USERS, CANDIDATES, SHRINKAGE = 50, 2_000, 60, 5.0


def rss() -> int:
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def correction_events(version: ModelVersion, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ratings (users, items, scores) that move a tenth of ``version``'s items by their mean residuals
    and rate 1,000 items it does not know: what the edge's corrections have read after a while."""
    rng = np.random.default_rng(seed)
    n = len(version.item_ids)
    rated = rng.choice(n, n // 10, replace=False)
    rows = np.concatenate([np.repeat(rated, 3), n + rng.integers(0, 1_000, 3_000)])
    shift = rng.normal(0, 0.5, n + 1_000)[rows]
    users = version.user_ids[rng.integers(0, len(version.user_ids), len(rows))]
    items = np.where(rows < n, version.item_ids[np.minimum(rows, n - 1)], version.item_ids.max() + 1 + rows - n)
    return users, items, predict_many(version, users, items) + shift + rng.normal(0, 0.5, len(rows))


def corrected(version: ModelVersion, seed: int = 0) -> ModelVersion:
    """``version`` as the edge serves it after ``correction_events`` (shrunk, k = 5)."""
    seen = ItemCorrections(version)
    seen.add(*correction_events(version, seed))
    return seen.corrected(SHRINKAGE)


def publish_corrections(settings: Settings, version: ModelVersion) -> int:
    """``correction_events``' item totals on ``item-corrections``, as the workers publish what they
    count (all in partition 0's messages here: an edge sums the partitions)."""
    seen = ItemCorrections(version)
    seen.add(*correction_events(version))
    codes, sums, squares, counts = seen.totals()
    producer = clients.producer(settings)
    whole = ItemTotalsMessage(version.id, 0, 0, seen.events, -1, True, codes, sums, squares, counts.astype(np.int64), {})
    for part in item_totals.chunks(whole):
        producer.produce(item_corrections.topic(settings), value=item_totals.encode(part), partition=0)
    assert producer.flush(120) == 0
    return seen.events


def exact_answers(version: ModelVersion, users: np.ndarray, k: int = 10) -> tuple[list[list[int]], float]:
    """The exact scan's answers and its seconds a request."""
    bare = attach(version.with_items(version.item_ids, version.item_factors, version.item_bias), None)
    started = time.perf_counter()
    answers = [top_k(bare, version.user_vectors[u], k).items for u in users]
    return answers, (time.perf_counter() - started) / len(users)


def recall(found: list[list[int]], truth: list[list[int]]) -> float:
    return float(np.mean([len(set(f[:10]) & set(t)) / 10 for f, t in zip(found, truth)]))


def candidates(y: np.ndarray, threads: int = 2) -> dict[str, Callable[[], Callable[[np.ndarray], np.ndarray]]]:
    """Each library's index over the rows ``y``: building returns a search (query -> candidate rows)."""
    n, d = y.shape

    def faiss_ivf() -> Callable[[np.ndarray], np.ndarray]:
        import faiss

        from velox.model.index import cells_for
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, cells_for(n), faiss.METRIC_INNER_PRODUCT)
        faiss.omp_set_num_threads(threads)
        index.train(y[np.random.default_rng(0).choice(n, min(n, 64 * cells_for(n)), replace=False)])
        index.add(y)
        faiss.omp_set_num_threads(1)
        index.nprobe = BREADTH
        return lambda q: index.search(q[None, :], CANDIDATES)[1][0]

    def faiss_hnsw() -> Callable[[np.ndarray], np.ndarray]:
        import faiss
        index = faiss.IndexHNSWFlat(d, 16, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 100
        faiss.omp_set_num_threads(threads)
        index.add(y)
        faiss.omp_set_num_threads(1)
        index.hnsw.efSearch = 200
        return lambda q: index.search(q[None, :], CANDIDATES)[1][0]

    def hnswlib_ip() -> Callable[[np.ndarray], np.ndarray]:
        import hnswlib
        index = hnswlib.Index(space="ip", dim=d)
        index.init_index(n, M=16, ef_construction=100)
        index.add_items(y, num_threads=threads)
        index.set_ef(200)
        index.set_num_threads(1)
        return lambda q: index.knn_query(q[None, :], k=CANDIDATES)[0][0].astype(np.int64)

    def usearch_ip() -> Callable[[np.ndarray], np.ndarray]:
        from usearch.index import Index
        index = Index(ndim=d, metric="ip", dtype="f16", connectivity=16, expansion_add=100, expansion_search=200)
        index.add(np.arange(n), y, threads=threads)
        return lambda q: np.asarray(index.search(q, CANDIDATES, threads=1).keys, np.int64)

    def voyager_ip() -> Callable[[np.ndarray], np.ndarray]:
        import voyager
        index = voyager.Index(voyager.Space.InnerProduct, num_dimensions=d, M=16, ef_construction=100)
        index.add_items(y, num_threads=threads)
        return lambda q: index.query(q, k=CANDIDATES, query_ef=200)[0].astype(np.int64)

    def scann_ah() -> Callable[[np.ndarray], np.ndarray]:
        import scann
        leaves = int(2 * np.sqrt(n))
        searcher = (scann.scann_ops_pybind.builder(y, CANDIDATES, "dot_product")
                    .tree(num_leaves=leaves, num_leaves_to_search=leaves // 20, training_sample_size=min(n, 100_000))
                    .score_ah(2, anisotropic_quantization_threshold=0.2).reorder(200).build())
        return lambda q: searcher.search(q, final_num_neighbors=CANDIDATES)[0].astype(np.int64)

    return {"faiss IVF-Flat (nprobe 48)": faiss_ivf, "faiss HNSW (M 16, ef 200)": faiss_hnsw,
            "hnswlib (M 16, ef 200)": hnswlib_ip, "usearch f16 (M 16, ef 200)": usearch_ip,
            "Voyager (M 16, ef 200)": voyager_ip, "ScaNN (tree + AH, reorder 200)": scann_ah}


def compare(items: int, users: int = 300) -> dict[str, dict[str, Any]]:
    """Every candidate library on one catalog, as trained (recall against the exact scan)."""
    version = clustered(USERS, items, D, seed=1)
    y = np.ascontiguousarray(np.hstack([version.item_factors, version.item_bias[:, None]]), np.float32)
    asked = np.arange(users)
    queries = np.hstack([version.user_vectors[asked, :-1], np.ones((users, 1), np.float32)])
    truth, _ = exact_answers(version, asked)
    found: dict[str, dict[str, Any]] = {}
    for name, build in candidates(y).items():
        try:
            before, started = rss(), time.perf_counter()
            search = build()
            built, grown = time.perf_counter() - started, rss() - before
            answers, started = [], time.perf_counter()
            for q in queries:
                rows = search(q)
                rows = rows[rows >= 0]
                answers.append(rows[np.argsort(-(y[rows] @ q), kind="stable")][:10])
            per_s = users / (time.perf_counter() - started)
            found[name] = {"recall_at_10": recall([version.item_ids[a].tolist() for a in answers], truth),
                           "build_s": built, "memory_mb": grown / 1e6, "queries_per_s": per_s}
        except Exception as exc:  # a candidate that does not build here is reported, not fatal
            found[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"  {name:34} {json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in found[name].items()})}",
              flush=True)
        search = None
    return found


def in_process(items: int, breadths: list[int], users: int = 500) -> tuple[dict[str, Any], ModelVersion, ItemIndex]:
    """The chosen index against the exact scan on one catalog, served with corrections."""
    version = clustered(USERS, items, D, seed=2)
    started = time.perf_counter()
    index = ItemIndex.build(version)
    built = time.perf_counter() - started
    served = corrected(attach(version, index))
    asked = np.random.default_rng(3).choice(len(version.user_ids), users, replace=False)
    truth, exact_s = exact_answers(served, asked)
    sweep = {}
    for breadth in breadths:
        index.breadth = breadth
        top_k(served, version.user_vectors[asked[0]], 10)  # the served table's raised rows, once per table
        started = time.perf_counter()
        answers = [top_k(served, version.user_vectors[u], 10).items for u in asked]
        sweep[breadth] = {"recall_at_10": recall(answers, truth), "ms": (time.perf_counter() - started) / users * 1e3}
        print(f"  {items:>9,} items, breadth {breadth:3}: recall@10 {sweep[breadth]['recall_at_10']:.3f}, "
              f"{sweep[breadth]['ms']:.3f} ms a request (exact {exact_s * 1e3:.3f} ms)", flush=True)
    index.breadth = BREADTH
    return {"items": items, "build_s": built, "exact_ms": exact_s * 1e3, "cells": index.index.nlist,
            "index_mb": index.memory_bytes() / 1e6, "factors_mb": version.item_factors.nbytes / 1e6,
            "breadth": {str(b): figures for b, figures in sweep.items()}, "default_breadth": BREADTH,
            "appended": len(served.item_ids) - items}, version, index


class ScannIndex(ItemIndex):
    """ScaNN (tree + asymmetric hashing, then exact reordering) behind ``ItemIndex``'s rescoring, so it
    answers the served catalog, corrections and all, as faiss does: only the search differs."""

    def __init__(self, version: ModelVersion) -> None:
        import scann
        y = rows_of(version)
        self.leaves = int(2 * np.sqrt(len(y)))
        self.searcher = (scann.scann_ops_pybind.builder(y, CANDIDATES, "dot_product")
                         .tree(num_leaves=self.leaves, num_leaves_to_search=100, training_sample_size=min(len(y), 100_000))
                         .score_ah(2, anisotropic_quantization_threshold=0.2).reorder(2_000).build())
        super().__init__(faiss.IndexFlatIP(y.shape[1]), version.item_bias)
        self.n, self.reorder = len(y), 200

    def search(self, queries: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        rows, found = self.searcher.search_batched(queries, final_num_neighbors=count, leaves_to_search=self.breadth,
                                                   pre_reorder_num_neighbors=max(self.reorder, count))
        return rows.astype(np.int64), found


def scann_at(version: ModelVersion, settings: list[tuple[int, int]], users: int = 500) -> dict[str, Any]:
    """ScaNN on the large catalog with the same corrections and users as the chosen index: recall@10,
    time a request, build time and memory, by (leaves searched, reordered candidates)."""
    before, started = rss(), time.perf_counter()
    try:
        index = ScannIndex(version)
    except Exception as exc:  # not installed here: reported, not fatal
        return {"error": f"{type(exc).__name__}: {exc}"}
    found: dict[str, Any] = {"build_s": time.perf_counter() - started, "memory_mb": (rss() - before) / 1e6,
                             "leaves": index.leaves, "settings": {}}
    served = corrected(attach(version, index))
    asked = np.random.default_rng(3).choice(len(version.user_ids), users, replace=False)
    truth, _ = exact_answers(served, asked)
    for leaves, reorder in settings:
        index.breadth, index.reorder = leaves, reorder
        top_k(served, version.user_vectors[asked[0]], 10)
        started = time.perf_counter()
        answers = [top_k(served, version.user_vectors[u], 10).items for u in asked]
        figures = {"recall_at_10": recall(answers, truth), "ms": (time.perf_counter() - started) / users * 1e3}
        found["settings"][f"{leaves} leaves, reorder {reorder}"] = figures
        print(f"  ScaNN, {leaves} leaves, reorder {reorder}: recall@10 {figures['recall_at_10']:.3f}, "
              f"{figures['ms']:.3f} ms a request", flush=True)
    return found


def as_served(version: ModelVersion, users: int = 2_000) -> tuple[float, float]:
    """Milliseconds a request of top-k as the edge serves ``version`` (an index only from
    ``topk_index_items``) and of the exact scan, interleaved so both see the same machine."""
    served = attach(version, build_for(version, Settings().topk_index_items))
    bare = attach(version.with_items(version.item_ids, version.item_factors, version.item_bias), None)
    asked = np.random.default_rng(5).choice(len(version.user_ids), users)
    spent = {"served": 0.0, "exact": 0.0}
    for u in asked.tolist():
        for name, one in (("served", served), ("exact", bare)):
            started = time.perf_counter()
            top_k(one, version.user_vectors[u], 10)
            spent[name] += time.perf_counter() - started
    return spent["served"] / users * 1e3, spent["exact"] / users * 1e3


def over_http(base: Settings, work: Path, version: ModelVersion, index: ItemIndex, seconds: float,
              concurrency: int) -> dict[str, Any]:
    """Maximum top-k rate through the edge, exact and indexed, and the indexed p99 at half its maximum."""
    settings = base.replace(namespace="topk-", partitions=2, d=D, item_shrinkage=SHRINKAGE)
    topics.ensure(settings)
    events = publish_corrections(settings, version)  # each edge reads their totals at start: served with them
    store = ModelStore(settings.model_store)
    store.save(version, VersionInfo(id=version.id, created_at=time.time(), d=D, training_end={}), index)
    versions.activate(settings, version.id, reason="bench/topk.py")
    write_states(settings, 1)  # the partitions' DBs, and this edge announced as their owner; user 0 is not asked
    paths = [f"/v1/models/{settings.model}/top_k?user={u}&k=10"
             for u in np.random.default_rng(4).integers(1, len(version.user_ids), 400_000).tolist()]
    results: dict[str, Any] = {}
    for name, own in (("exact", settings.replace(topk_index_items=10**9, cache_entries=0)),
                      ("indexed", settings.replace(cache_entries=0))):
        started = time.perf_counter()
        with edge(own, work / f"edge-{name}.log") as port:
            ready = time.perf_counter() - started
            drive(port, paths[:200], 2, concurrency)
            results[name] = {**drive(port, paths, seconds, concurrency), "edge_ready_s": ready}
            if name == "indexed":
                results["indexed_at_half"] = drive(port, paths, seconds, concurrency,
                                                   rate=results[name]["requests_per_s"] / 2)
                results["indexed_at_half"]["load_average"] = os.getloadavg()[0]  # the machine's, others included
            counted = edge_metrics(port)
            results[name]["answers"] = {path: counted.get(f'velox_edge_top_k_answers_total{{path="{path}"}}', 0.0)
                                        for path in ("index", "exact")}
            results[name]["corrected_items"] = max((value for sample, value in counted.items()  # one gauge a process
                                                    if sample.startswith("velox_edge_corrected_items")), default=0.0)
            results[name]["correction_events"] = events
        print(f"  HTTP {name}: {results[name]['requests_per_s']:,.0f} req/s, p99 {results[name]['p99_ms']:.2f} ms, "
              f"edge ready in {ready:.1f} s", flush=True)
    print(f"  HTTP indexed at half: p99 {results['indexed_at_half']['p99_ms']:.2f} ms", flush=True)
    return results


def check(what: str, figure: float, target: str, met: bool) -> dict[str, Any]:
    return {"what": what, "figure": round(figure, 4), "target": target, "met": bool(met)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare-items", type=int, default=100_000)
    parser.add_argument("--items", type=int, nargs=2, default=[10_000, 1_000_000])
    parser.add_argument("--breadths", type=int, nargs="+", default=[16, 32, 48, 64, 96])
    parser.add_argument("--crossover", type=int, nargs="+", default=[30_000, 100_000, 300_000])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    small_n, large_n = args.items
    print(f"libraries on {args.compare_items:,} items:", flush=True)
    libraries = compare(args.compare_items)
    small, small_version, _ = in_process(small_n, args.breadths)
    small["served_ms"], small["exact_again_ms"] = as_served(small_version)
    crossover = {str(n): in_process(n, [BREADTH], users=300)[0] for n in args.crossover}
    faster = [n for n in args.crossover if 4 * crossover[str(n)]["breadth"][str(BREADTH)]["ms"] <= crossover[str(n)]["exact_ms"]]
    large, version, index = in_process(large_n, args.breadths)
    print(f"ScaNN on the same {large_n:,} items:", flush=True)
    large["scann"] = scann_at(version, [(100, 200), (100, 1_000), (300, 2_000)])
    with tempfile.TemporaryDirectory() as work, throwaway_broker(Settings.from_env(data=Path(work))) as base:
        http = over_http(base, Path(work), version, index, args.seconds, args.concurrency)
    chosen = large["breadth"][str(BREADTH)]
    smaller = small["breadth"][str(BREADTH)]
    speedup = http["indexed"]["requests_per_s"] / http["exact"]["requests_per_s"]
    checks = [
        check(f"recall@10 against exact, {large_n:,} items, corrections applied", chosen["recall_at_10"], "≥ 0.95",
              chosen["recall_at_10"] >= 0.95),
        check(f"top-k p99 at half the maximum rate, {large_n:,} items, HTTP (ms; p50 "
              f"{http['indexed_at_half']['p50_ms']:.1f} ms; load average {http['indexed_at_half']['load_average']:.1f} "
              f"on {os.cpu_count()} cores)", http["indexed_at_half"]["p99_ms"],
              "≤ 10 ms", http["indexed_at_half"]["p99_ms"] <= 10),
        check(f"maximum top-k rate, indexed over exact, {large_n:,} items, HTTP", speedup, "≥ 20x", speedup >= 20),
        check(f"index memory over item factors', {large_n:,} items", large["index_mb"] / large["factors_mb"], "≤ 2x",
              large["index_mb"] <= 2 * large["factors_mb"]),
        check(f"top-k as served over the exact scan, {small_n:,} items, in-process (below topk_index_items: no "
              f"index; the index alone takes {smaller['ms'] / small['exact_ms']:.1f}x)",
              small["served_ms"] / small["exact_again_ms"], "≤ 1.05 (not slower, within timing noise)",
              small["served_ms"] <= 1.05 * small["exact_again_ms"]),
        check(f"topk_index_items (the default) against the smallest catalog of {args.crossover} where the index "
              f"answers at least 4x as fast as the exact scan, in-process", Settings().topk_index_items,
              f"= {min(faster, default=0):,}", Settings().topk_index_items == min(faster, default=0)),
    ]
    print_checks(checks)
    write_json(args.json, {"d": D, "compare_items": args.compare_items, "libraries": libraries,
                           "small": small, "large": large, "crossover": crossover,
                           "http": http, "checks": checks})


if __name__ == "__main__":
    main()
