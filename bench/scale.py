"""Millions of users and items: what grows with them, at 100,000 users and at full size, in one run.

For each size (``--small-users``, then ``--users``; ``--items`` items, d = 50, 8 partitions), on one
broker started for the run:

1. A planted split model (``velox.model.synthetic.planted``, its users in shuffled rows as a
   retrain leaves them) written to the model store directly, training end 0, and activated; the
   top-k index built once for the run's items (every version shares θ) and saved beside each.
2. ``--events`` observations (``--small-events`` at the small size) of uniform users and items
   produced (bench/stream.py's producer); the end offsets kept when ``--since`` of them are still to
   come: the training end of the second version.
3. One worker (``velox worker``) applies them: events/s from its first to its last, resident
   memory; then produce-to-visible p50 and p99 at ``--latency-rate`` (bench/stream.py's).
4. A swap to the second version (the same θ and users, trained up to ``--since`` events before the
   log's end) under 2,000 events/s (bench/swap.py's): its time, produce-to-visible during it
   (the longest bounds its longest gap), the worker's preparation (the version loaded and its users
   placed: the part a worker pays for every user, whatever its partitions), and its seconds per unit
   of work (an event replayed or a user written).
5. One edge (``velox serve``) started beside the worker after the swap: start to ready, the events
   its item corrections decoded from the log, predict and top-k rates (bench/serve.py's client,
   uniform users and items), resident memory against the version's arrays plus its two answer
   caches filled (their size measured here with tracemalloc).
6. The corrections' cost per event in this process: ``ItemCorrections.add`` over batches of 100
   ratings of the version's users (what the edge does per batch it reads).

The checks are issue 36's targets, the full size judged against the small one of the same run.
A Spark retrain at 1,000,000 users is not run here (bench/retrain.py times retrains; see
bench/README.md).

    python bench/scale.py [--users 5000000 --items 1000000 --events 20000000 --since 5000000] [--json bench/results/scale.json]

Needs about 24 GiB of memory at the full size. Uses the broker at VELOX_BOOTSTRAP if set, else
starts one of its own and stops it after.
"""

from __future__ import annotations

import argparse
import os
import re
import time
import tracemalloc
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from serve import drive, edge, edge_metrics  # bench/serve.py
from stream import (  # bench/stream.py
    applying,
    broker_settings,
    latency,
    print_checks,
    produce,
    progress,
    rss_mb,
    worker_process,
    write_json,
)
from swap import swap  # bench/swap.py

from velox.control import topics, versions
from velox.kafka import positions
from velox.model.corrections import ItemCorrections
from velox.model.index import ItemIndex
from velox.model.store import ModelStore
from velox.model.synthetic import planted
from velox.model.version import ModelVersion
from velox.schemas.model_version import VersionInfo
from velox.serving.cache import PredictionCache
from velox.settings import Settings

D, PARTITIONS, SWAP_RATE = 50, 8, 2_000


def planted_version(users: int, items: int, version_id: str) -> ModelVersion:
    """The planted truth with its users in shuffled rows (a retrain's rows follow no id order)."""
    truth = planted(users=users, items=items, d=D, seed=1)
    order = np.random.default_rng(2).permutation(users)
    return replace(truth, id=version_id, user_ids=truth.user_ids[order], user_counts=np.full(users, 4, np.int64))


def save(settings: Settings, version: ModelVersion, training_end: dict[int, int], index: ItemIndex | None) -> None:
    info = VersionInfo(id=version.id, created_at=time.time(), d=version.d, training_end=training_end)
    ModelStore(settings.model_store).save(version, info, index)


def version_bytes(version: ModelVersion, index: ItemIndex | None) -> int:
    """The version's arrays as the edge holds them: users, items, the lookups and the top-k index."""
    arrays = [version.user_ids, version.user_vectors, version.user_counts, version.item_ids, version.item_factors,
              version.item_bias, version.item_base, version.users.sorted, version.items.sorted]
    arrays += [lookup.order for lookup in (version.users, version.items) if lookup.order is not None]
    once = {id(a): a.nbytes for a in arrays}  # ids stored sorted are their own sorted copy
    return sum(once.values()) + (len(index.to_bytes()) if index is not None else 0)


def cache_bytes(entries: int) -> int:
    """The edge's two answer caches filled with ``entries`` answers each, as they key and hold them."""
    tracemalloc.start()
    predict, top = PredictionCache("scale-predict", entries), PredictionCache("scale-top-k", entries)
    answer = msgspec.Raw(msgspec.json.encode([{"item": 100_000 + i, "score": 3.25 + i, "explored": False}
                                              for i in range(10)]))
    for n in range(entries):
        identity = ("planted-version-id", 3, 1_000_000 + n, 20_000_000 + n)
        predict.put((*identity, 500_000 + n), 3.5 + n)
        top.put((*identity, 10, None, False), msgspec.Raw(bytes(answer)))
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return size


def corrections_cost(version: ModelVersion, batches: int = 300, runs: int = 5) -> float:
    """Microseconds per event of ``ItemCorrections.add`` over batches of 100 ratings of the version's
    users: the least of ``runs`` (the cores are shared: the least is the least disturbed)."""
    rng = np.random.default_rng(3)
    drawn = [(rng.choice(version.user_ids, 100), rng.choice(version.item_ids, 100), rng.normal(3.5, 1, 100))
             for _ in range(batches)]
    best = float("inf")
    for _ in range(runs):
        seen = ItemCorrections(version)
        started = time.perf_counter()
        for users, items, scores in drawn:
            seen.add(users, items, scores)
        best = min(best, (time.perf_counter() - started) / (batches * 100) * 1e6)
    return best


def prepared(log: Path, version_id: str) -> dict[str, float]:
    """The worker's preparation of the swap, from its log line."""
    found = re.search(rf"swapping to version {version_id} .*: (\d+) users loaded and placed in ([\d.]+) s", log.read_text())
    assert found is not None, f"no swap to {version_id} in {log}"
    return {"users": int(found.group(1)), "prepare_s": float(found.group(2))}


def one_size(base: Settings, args: argparse.Namespace, users: int, events: int, since: int, index: ItemIndex | None,
             work: Path) -> dict[str, Any]:
    # One edge process: its memory is the figure judged against the version's arrays (bench/serve.py
    # measures the edge's processes).
    settings = base.replace(namespace=f"scale{uuid.uuid4().hex[:6]}-", partitions=PARTITIONS, d=D, items=args.items,
                            data=work / f"users-{users}", edge_processes=1)
    topics.ensure(settings)
    topic = settings.topic("observations")
    progress(f"{users:,} users: planting and saving the versions")
    first = planted_version(users, args.items, f"planted-{users}-{uuid.uuid4().hex[:6]}")
    save(settings, first, {p: 0 for p in range(PARTITIONS)}, index)
    versions.activate(settings, first.id, reason="bench")
    progress(f"{users:,} users: producing {events:,} events")
    produce(settings, topic, events - since, users, args.items)
    second = replace(first, id=f"{first.id}-b")
    save(settings, second, positions.end_offsets(settings, topic), index)
    produce(settings, topic, since, users, args.items)
    figures: dict[str, Any] = {"users": users, "items": args.items, "events": events, "since_training_end": since}
    log = settings.data / "worker.log"
    with worker_process(settings) as (worker, port):
        progress(f"{users:,} users: the worker applies them")
        figures["worker"] = {name: round(value, 2) for name, value in applying(worker, port, events, log).items()}
        progress(f"  {figures['worker']}")
        figures["latency"] = latency(settings, topic, worker, port, args.latency_rate, args.latency_seconds, users, args.items)
        progress(f"  produce to visible at {args.latency_rate:,.0f} events/s: {figures['latency']}")
        swapped = swap(settings.replace(worker_metrics_port=port), port, log, SWAP_RATE, figures["worker"]["rate"],
                       second.id)
        swapped |= prepared(log, second.id)
        swapped["seconds_per_unit_us"] = round(swapped["swap_s"] / (swapped["replayed"] + swapped["users"]) * 1e6, 2)
        swapped["worker_rss_mb"] = round(rss_mb(worker.pid))
        figures["swap"] = swapped
        progress(f"  swap: {swapped}")
        figures["edge"] = edge_figures(settings, args, users, second, index)
        progress(f"  edge: {figures['edge']}")
    figures["corrections_us_per_event"] = round(corrections_cost(second), 3)
    return figures


def edge_figures(settings: Settings, args: argparse.Namespace, users: int, version: ModelVersion,
                 index: ItemIndex | None) -> dict[str, Any]:
    """The edge beside the worker: start to ready, the item-corrections messages it read (no
    observation: the workers count them), its rates and memory."""
    started = time.monotonic()
    with edge(settings, settings.data / "edge.log") as port:  # (gives up waiting after a minute)
        while not ready(port):
            time.sleep(0.2)
        ready_s = time.monotonic() - started
        metrics = edge_metrics(port)
        read = metrics.get("velox_edge_correction_messages", 0.0)
        rng = np.random.default_rng(4)
        model = f"/v1/models/{settings.model}"
        asked = rng.integers(users, size=200_000).tolist()
        predict = [f"{model}/predict?user={u}&item={i}" for u, i in zip(asked, rng.integers(args.items, size=len(asked)).tolist())]
        top = [f"{model}/top_k?user={u}&k=10" for u in asked]
        drive(port, ["/healthz"], 2, args.concurrency)  # warm-up
        rates = {name: drive(port, paths, args.seconds, args.concurrency) for name, paths in
                 (("predict", predict), ("top_k", top))}
        rss = edge_metrics(port)["process_resident_memory_bytes"]
    arrays, caches = version_bytes(version, index), cache_bytes(settings.cache_entries)
    return {"ready_s": round(ready_s, 2), "corrections_messages_read": int(read),
            **{f"{name}_per_s": round(r["requests_per_s"]) for name, r in rates.items()},
            **{f"{name}_p99_ms": round(r["p99_ms"], 2) for name, r in rates.items()},
            "rss_mb": round(rss / 2**20), "version_arrays_mb": round(arrays / 2**20), "caches_mb": round(caches / 2**20),
            "rss_over_arrays_and_caches": round(rss / (arrays + caches), 3)}


def ready(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).status == 200
    except OSError:  # refused while it starts, or 503 (HTTPError) until every partition has an owner
        return False


def checks(small: dict[str, Any], full: dict[str, Any]) -> list[dict[str, Any]]:
    def check(what: str, figure: float, target: str, met: bool) -> dict[str, Any]:
        return {"what": what, "figure": round(figure, 3), "target": target, "met": bool(met)}

    def ratio(part: str, name: str) -> float:
        return full[part][name] / small[part][name]

    n, m = f"{full['users']:,}", f"{small['users']:,}"
    corrections = full["corrections_us_per_event"] / small["corrections_us_per_event"]
    found = [
        check(f"item corrections' cost per event, {n} users against {m}", corrections, "<= 1.2", corrections <= 1.2),
        check(f"edge start to ready, {n} users, {full['since_training_end']:,} events since the training end (s)",
              full["edge"]["ready_s"], "<= 10", full["edge"]["ready_s"] <= 10),
        check("item-corrections messages an edge read to start, per event since the training end (each event "
              "decoded once per cluster, by its worker)", full["edge"]["corrections_messages_read"] /
              max(full["since_training_end"], 1), "< 0.01",
              full["edge"]["corrections_messages_read"] < 0.01 * full["since_training_end"]),
        check(f"edge resident memory over the version's arrays and its caches, {n} users",
              full["edge"]["rss_over_arrays_and_caches"], "<= 1.5", full["edge"]["rss_over_arrays_and_caches"] <= 1.5),
        check(f"worker events/s, {n} users against {m}", ratio("worker", "rate"), ">= 0.8", ratio("worker", "rate") >= 0.8),
        check(f"edge predicts/s, {n} users against {m}", ratio("edge", "predict_per_s"), ">= 0.9",
              ratio("edge", "predict_per_s") >= 0.9),
        check(f"swap: seconds per event replayed or user written, {n} users against {m}",
              ratio("swap", "seconds_per_unit_us"), "<= 1.2", ratio("swap", "seconds_per_unit_us") <= 1.2),
    ]
    for size in (small, full):
        p99 = size["latency"]["p99_ms"]
        found.append(check(f"produce to visible p99 (ms) at 5,000 events/s, {size['users']:,} users", p99, "<= 50",
                           p99 <= 50))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=5_000_000)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--since", type=int, default=5_000_000, help="events after the second version's training end")
    parser.add_argument("--small-users", type=int, default=100_000)
    parser.add_argument("--small-events", type=int, help="default: a quarter of --events (and of --since)")
    parser.add_argument("--latency-rate", type=float, default=5_000)
    parser.add_argument("--latency-seconds", type=float, default=10)
    parser.add_argument("--seconds", type=float, default=10, help="of predict, and of top-k, at the edge")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    small_events = args.small_events or args.events // 4
    small_since = args.since * small_events // args.events
    started = time.monotonic()
    with broker_settings("scale") as base:
        index = None
        if args.items >= base.topk_index_items:
            progress(f"building the top-k index of {args.items:,} items (once: every version has the same θ)")
            index = ItemIndex.build(planted(users=1, items=args.items, d=D, seed=1), base.topk_breadth)
        small = one_size(base, args, args.small_users, small_events, small_since, index, base.data)
        full = one_size(base, args, args.users, args.events, args.since, index, base.data)
    result = {"d": D, "partitions": PARTITIONS, "sizes": {"small": small, "full": full}, "checks": checks(small, full),
              "spark_retrain": "not run (see bench/README.md)", "seconds": round(time.monotonic() - started),
              "load_average_15_min": round(os.getloadavg()[2], 1)}
    for size in (small, full):
        w, s, e = size["worker"], size["swap"], size["edge"]
        print(f"{size['users']:>10,} users, {size['items']:,} items, {size['events']:,} events: worker {w['rate']:,.0f} "
              f"events/s, RSS {w['rss_end_mb']:,.0f} MB; p99 at {args.latency_rate:,.0f}/s {size['latency']['p99_ms']:.0f} ms; "
              f"swap after {size['since_training_end']:,} events {s['swap_s']:.1f} s (prepared in {s['prepare_s']:.1f} s), "
              f"longest ≤ {s['longest_ms']:.0f} ms; edge ready in {e['ready_s']:.1f} s having read {e['corrections_messages_read']:,} "
              f"item-corrections messages, predict {e['predict_per_s']:,}/s, top-k {e['top_k_per_s']:,}/s, RSS {e['rss_mb']:,} MB "
              f"(arrays {e['version_arrays_mb']:,} + caches {e['caches_mb']:,}); corrections "
              f"{size['corrections_us_per_event']:.2f} µs/event")
    print_checks(result["checks"])
    write_json(args.json, result)


if __name__ == "__main__":
    main()
