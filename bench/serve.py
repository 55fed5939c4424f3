"""The edge under load: a no-op route of the same app (the ceiling), predict, and top-k, in one run.

100,000 users with d = 50 weights are written where a worker keeps them; the edge (`velox serve`,
its own process) reads them as RocksDB secondaries; 10,000 items. wrk (one thread, where
installed: `apt-get install wrk`), else a small asyncio HTTP/1.1 keep-alive client of ours,
drives each route at fixed concurrency for a fixed time, then top-k at half its maximum rate
(exponential gaps between requests: ``drive``) for its latency. Users and items are
uniform (few repeats: the prediction cache rarely helps), then Zipf-distributed (s = 1.2, the
popular few asked again and again), with the cache's hit rate for each run.

    python bench/serve.py [--seconds 10 --concurrency 16] [--json bench/results/serve.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import plotting
from stream import print_checks, uuid_id, uuid_version, write_json  # bench/stream.py

from velox import processes
from velox.control import owners, topics
from velox.control.versions import initial_version
from velox.kafka import clients
from velox.local.broker import free_bootstrap, throwaway_broker
from velox.schemas import ids, partitioning, user_state
from velox.schemas.user_state import UserState
from velox.serving.edge import JSON, Edge, Weights, local_weights
from velox.serving.server import create_app
from velox.settings import Settings
from velox.state.layout import table_path
from velox.state.partition_store import PartitionStore


def write_states(settings: Settings, users: int, named: Callable[[int], int | str] = int) -> None:
    """Records as the worker writes them, on the initial version, one RocksDB per partition, announced
    as its; each user's key their id as ``named`` gives it."""
    with primaries(settings) as put:
        for user in range(users):
            put(named(user), user)
    owners.ensure_topic(settings)
    owners.announce(settings, clients.producer(settings), list(range(settings.partitions)))


@contextmanager
def primaries(settings: Settings) -> Iterator[Callable[[int | str, int], None]]:
    """``put(user, offset)``: a record for the user as the worker writes it, into the partition's RocksDB."""
    rng = np.random.default_rng(1)
    version = initial_version(settings).id
    stores = {p: PartitionStore(table_path(settings.data, p)) for p in range(settings.partitions)}

    def put(user: int | str, offset: int) -> None:
        key = ids.key(user)
        state = UserState(version, rng.normal(0, 0.3, settings.d).astype(np.float32), count=1, offset=offset)
        stores[partitioning.home(key, settings.partitions)].put(key, user_state.encode(state))

    try:
        yield put
    finally:
        for store in stores.values():
            store.close()


@contextmanager
def writing(settings: Settings, users: int, rate: float) -> Iterator[Callable[[], float]]:
    """A worker's writes at ``rate`` records a second to random users, from a thread, until the block
    ends: the separate edge process then pays for catching its secondaries up. Yields the rate reached."""
    stop = threading.Event()
    written = [0]

    def run() -> None:
        with primaries(settings) as put:
            started = time.perf_counter()
            while not stop.is_set():
                put(random.randrange(users), users + written[0])
                written[0] += 1
                time.sleep(max(started + written[0] / rate - time.perf_counter(), 0))

    thread = threading.Thread(target=run)
    started = time.perf_counter()
    thread.start()
    try:
        yield lambda: written[0] / (time.perf_counter() - started)
    finally:
        stop.set()
        thread.join()


async def one_connection(port: int, paths: list[str], deadline: float, latencies: list[float],
                         interval: float | None) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    # Paced runs: Poisson arrivals (exponential gaps) per connection, so the connections do not
    # fire in step (16 requests at once every interval would measure the queue of each burst).
    next_at = time.perf_counter()
    while time.perf_counter() < deadline:
        if interval is not None:
            next_at += random.expovariate(1 / interval)
            await asyncio.sleep(max(next_at - time.perf_counter(), 0))
        path = paths[random.randrange(len(paths))]
        started = time.perf_counter()
        writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"{path} answered {head[:40]!r}")
        latencies.append(time.perf_counter() - started)
    writer.close()


WRK_SCRIPT = """
local paths = {}
init = function(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  math.randomseed(os.time() + #paths)
end
request = function() return wrk.format("GET", paths[math.random(#paths)]) end
done = function(summary, latency, requests)
  local q = {}
  for _, p in ipairs({%s}) do q[#q + 1] = string.format("%%.1f", latency:percentile(p)) end
  io.write(string.format('VELOX {"requests": %%d, "us": %%d, "bad": %%d, "quantiles_us": [%%s]}\\n',
    summary.requests, summary.duration, summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout, table.concat(q, ",")))
end
"""
WRK_PAUSE = """
delay = function() return -%f * math.log(1 - math.random()) end
"""


def drive(port: int, paths: list[str], seconds: float, concurrency: int, rate: float | None = None) -> dict[str, Any]:
    """Requests per second and latency quantiles: by wrk where installed, else our client.

    A paced run (``rate``) by wrk: each connection pauses before each request, the pause drawn
    from an exponential whose mean is the connection's interval (``concurrency / rate``) less the
    mean latency (from a 2-second run first), so the connections together reach the rate.
    """
    if shutil.which("wrk"):
        if rate is None:
            return drive_wrk(port, paths, seconds, concurrency)
        interval = concurrency / rate
        latency = concurrency / drive_wrk(port, paths, 2, concurrency, interval)["requests_per_s"] - interval
        return {**drive_wrk(port, paths, seconds, concurrency, max(interval - latency, 0)), "rate_asked": rate}
    latencies: list[float] = []
    interval = None if rate is None else concurrency / rate

    async def run() -> None:
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*(one_connection(port, paths, deadline, latencies, interval) for _ in range(concurrency)))

    asyncio.run(run())
    ms = np.array(latencies) * 1000
    return {"requests_per_s": len(latencies) / seconds, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)),
            "quantiles_ms": np.percentile(ms, QUANTILES).round(3).tolist(), "client": "asyncio"}


QUANTILES = [*range(1, 100), 99.5, 99.9]


def drive_wrk(port: int, paths: list[str], seconds: float, concurrency: int,
              pause: float | None = None) -> dict[str, Any]:
    """One wrk thread (0.3 to 0.4 of a core at these rates, reported as ``client_cores``); with
    ``pause``, each connection waits an exponential time of that mean (seconds) before each request."""
    with tempfile.TemporaryDirectory() as folder:
        script, listed = Path(folder) / "paths.lua", Path(folder) / "paths.txt"
        script.write_text(WRK_SCRIPT % ",".join(map(str, QUANTILES))
                          + ("" if pause is None else WRK_PAUSE % (pause * 1000)))
        listed.write_text("\n".join(paths) + "\n")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        run = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "-s", str(script),
                              f"http://127.0.0.1:{port}", "--", str(listed)], capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("VELOX "))[6:])
    if figures["bad"]:
        raise RuntimeError(f"{figures['bad']} requests failed or answered an error status: {run.stdout}")
    ms = [q / 1000 for q in figures["quantiles_us"]]
    return {"requests_per_s": figures["requests"] / (figures["us"] / 1e6), "p50_ms": ms[QUANTILES.index(50)],
            "p99_ms": ms[QUANTILES.index(99)], "quantiles_ms": ms, "client": "wrk",
            "client_cores": (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / (figures["us"] / 1e6)}


def plot(results: dict[str, dict[str, Any]], path: Path) -> bool:
    """Latency distributions (share of requests answered within x ms); False without matplotlib."""
    pyplot = plotting.pyplot()
    if pyplot is None:
        return False
    figure, axes = pyplot.subplots(figsize=(7, 4))
    for name in ("noop", "predict", "top_k", "top_k_at_half", "top_k_unbatched"):
        axes.plot(results[name]["quantiles_ms"], [q / 100 for q in QUANTILES], label=name)
    axes.set(xscale="log", xlabel="latency (ms, log scale)", ylabel="share of requests answered",
             title="Edge latency at 16 connections (top_k_at_half: at half its maximum rate)")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
    return True


def draws(users: int, items: int, rng: np.random.Generator, n: int = 400_000) -> tuple[tuple[list[int], list[int]], ...]:
    """(users, items) drawn uniformly, and Zipf-distributed (rank r drawn ∝ r^-1.2, ids shuffled)."""
    uniform = (rng.integers(users, size=n).tolist(), rng.integers(items, size=n).tolist())
    user_ids, item_ids = rng.permutation(users), rng.permutation(items)
    zipf = (user_ids[np.minimum(rng.zipf(1.2, n), users) - 1].tolist(),
            item_ids[np.minimum(rng.zipf(1.2, n), items) - 1].tolist())
    return uniform, zipf


def edge_metrics(port: int) -> dict[str, float]:
    """The edge's Prometheus samples, by name with labels."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {name: float(value) for name, value in (line.rsplit(" ", 1) for line in text.splitlines()
                                                    if line and not line.startswith("#"))}


def measured(port: int, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()``'s figures, with the share of its requests the prediction cache answered, and the
    mean time inside the route handlers (the edge's own latency histogram: no HTTP, no routing)."""
    before = edge_metrics(port)
    figures = run()
    after = edge_metrics(port)

    def change(prefix: str, label: str = "") -> float:
        return sum(value - before.get(name, 0.0) for name, value in after.items()
                   if name.startswith(prefix) and label in name)

    hits = change("velox_edge_cache_lookups_total", 'result="hit"')
    misses = change("velox_edge_cache_lookups_total", 'result="miss"')
    handled = change("velox_edge_request_seconds_count")
    return {**figures, "cache_hit_rate": hits / max(hits + misses, 1),
            "handler_us": change("velox_edge_request_seconds_sum") / handled * 1e6 if handled else None}


def breakdown(settings: Settings, users: list[int], items: list[int], n: int = 20_000) -> dict[str, float]:
    """Where a predict's time goes: microseconds per request of each stage of the edge's own code,
    run in this process on the same states (uvicorn's share is the rest of the served time).

    Each stage runs on users and items it has not seen before (the uniform mix), so that the
    prediction cache misses as it does under load.
    """
    edge_ = Edge.open(settings)
    app = create_app(edge_)
    model = f"/v1/models/{settings.model}/predict"

    async def call(path: str, query: str) -> None:
        scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "root_path": "",
                 "query_string": query.encode(), "headers": [(b"host", b"bench")], "scheme": "http",
                 "http_version": "1.1", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2), "app": app}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] != 200:
                raise RuntimeError(f"{path}?{query} answered {message['status']}")

        await app(scope, receive, send)

    def per_request(stage: Callable[[int], object], first: int) -> float:
        started = time.perf_counter()
        for j in range(first, first + n):
            stage(j)
        return (time.perf_counter() - started) / n * 1e6

    async def app_calls(path: str, query: Callable[[int], str], first: int) -> float:
        started = time.perf_counter()
        for j in range(first, first + n):
            await call(path, query(j))
        return (time.perf_counter() - started) / n * 1e6

    def key(j: int) -> tuple[int, bytes]:
        return partitioning.home(str(users[j]).encode(), settings.partitions), str(users[j]).encode()

    def weights(j: int) -> Weights:
        """local_weights run to its end here: with every version loaded it never waits."""
        step = local_weights(edge_, partitioning.home(str(users[j]).encode(), settings.partitions), users[j])
        try:
            step.send(None)
        except StopIteration as done:
            return done.value
        raise RuntimeError("local_weights waited for a version to load")

    try:
        asyncio.run(app_calls(model, lambda j: f"user={users[j]}&item={items[j]}", 0))  # warm-up
        figures = {
            "noop_route_us": asyncio.run(app_calls("/healthz", lambda j: "", 0)),
            "predict_route_us": asyncio.run(app_calls(model, lambda j: f"user={users[j]}&item={items[j]}", n)),
            "state_read_us": per_request(lambda j: edge_.state.get(*key(j)), 2 * n),
            "decode_us": per_request(lambda j: user_state.decode(edge_.state.get(*key(j)) or b""), 3 * n)
            - per_request(lambda j: edge_.state.get(*key(j)), 3 * n),
            "score_us": per_request(lambda j: (w := weights(j)).version.score(w.w, items[j]), 4 * n)
            - per_request(weights, 4 * n),
            "answer_json_us": per_request(lambda j: JSON({"user": users[j], "item": items[j], "score": 3.5,
                                                          "version": "v", "known_user": True, "known_item": True,
                                                          "default": False, "served_by": "worker-1"}), 0),
        }
    finally:
        edge_.close()
    figures["predict_over_noop_us"] = figures["predict_route_us"] - figures["noop_route_us"]
    return figures


@contextmanager
def edge(settings: Settings, log: Path) -> Iterator[int]:
    """`velox serve` with these settings on a free port, until the block ends, once every one of
    its processes answers (wrk opens its connections at once: a process not listening yet would
    get none of them)."""
    port = int(free_bootstrap().split(":")[1])
    process = processes.spawn(settings.replace(edge_port=port), log, "serve")
    try:
        answering: set[str] = set()
        deadline = time.monotonic() + 90
        while len(answering) < settings.edge_process_count():
            assert time.monotonic() < deadline, f"the edge's processes answering: {sorted(answering)}; see {log}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                    answering.add(response.headers["x-velox-process"])
            except OSError:
                time.sleep(0.2)
        yield port
    finally:
        processes.stop(process)


@contextmanager
def bare(users: int, items: int, d: int, server: str) -> Iterator[int]:
    """bench/bare_edge.py on a free port, on uvicorn or granian: the same predict and top-k from
    arrays in memory."""
    port = int(free_bootstrap().split(":")[1])
    here = Path(__file__).parent
    command = ([sys.executable, str(here / "bare_edge.py"), str(port)] if server == "uvicorn" else
               [str(Path(sys.executable).parent / "granian"), "--interface", "asgi", "--host", "127.0.0.1", "--port",
                str(port), "--workers", "1", "--log-level", "warning", "bare_edge:app"])
    process = subprocess.Popen(command, cwd=here, env={**os.environ, "BARE_EDGE": f"{users},{items},{d}"})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, f"bench/bare_edge.py on {server} never answered"
                time.sleep(0.2)
        yield port
    finally:
        processes.stop(process)


def processes_run(settings: Settings, args: argparse.Namespace, work: Path, paths: dict[str, list[str]]) -> dict[str, Any]:
    """Issue 39: the bare app, the edge with one process and with one per core, driven alike."""
    figures: dict[str, Any] = {}

    def drive_all(port: int, label: str) -> None:
        drive(port, ["/healthz"], 2, args.concurrency)  # warm-up
        for route, asked in paths.items():
            figures[f"{route}_{label}"] = drive(port, asked, args.seconds, args.concurrency)
            progress_line(f"{route}_{label}", figures[f"{route}_{label}"])
        most = figures[f"predict_{label}"]["requests_per_s"]
        figures[f"predict_{label}_at_half"] = drive(port, paths["predict"], args.seconds, args.concurrency, rate=most / 2)
        progress_line(f"predict_{label}_at_half", figures[f"predict_{label}_at_half"])

    with bare(args.users, args.items, args.d, "uvicorn") as port:
        drive_all(port, "bare")
    if shutil.which("granian", path=str(Path(sys.executable).parent)):  # the other server the edge could run on
        with bare(args.users, args.items, args.d, "granian") as port:
            drive_all(port, "bare_granian")
    cores = settings.replace(edge_processes=None).edge_process_count()
    for count in sorted({1, max(cores, 2)}):
        with edge(settings.replace(edge_processes=count), work / f"edge-{count}p.log") as port:
            drive_all(port, f"{count}p")
    figures["processes"] = max(cores, 2)
    return figures


def progress_line(name: str, figures: dict[str, Any]) -> None:
    cores = f"   client {figures['client_cores']:.2f} cores" if "client_cores" in figures else ""
    print(f"{name:22} {figures['requests_per_s']:8,.0f} req/s   p50 {figures['p50_ms']:6.2f} ms   "
          f"p99 {figures['p99_ms']:6.2f} ms{cores}", flush=True)


def processes_checks(f: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 39's targets, from ``processes_run``'s figures."""
    n = f["processes"]
    rate = {name: f[name]["requests_per_s"] for name in ("predict_bare", "predict_1p", f"predict_{n}p", "top_k_1p",
                                                          f"top_k_{n}p")}
    one_over_bare = rate["predict_1p"] / rate["predict_bare"]
    n_over_one = rate[f"predict_{n}p"] / rate["predict_1p"]
    top_k_n_over_one = rate[f"top_k_{n}p"] / rate["top_k_1p"]
    p99_one, p99_n = f["predict_1p_at_half"]["p99_ms"], f[f"predict_{n}p_at_half"]["p99_ms"]
    client = f[f"predict_{n}p"].get("client_cores")
    return [
        {"what": "predict, the edge with one process against the bare Starlette app", "figure": round(one_over_bare, 3),
         "target": ">= 0.9", "met": one_over_bare >= 0.9},
        {"what": f"predict, the edge with {n} processes against one"
                 + (f" (the load generator used {client:.2f} cores)" if client else ""),
         "figure": round(n_over_one, 3), "target": ">= 1.5", "met": n_over_one >= 1.5},
        {"what": f"top-k ({f['items']:,} items), the edge with {n} processes against one",
         "figure": round(top_k_n_over_one, 3), "target": ">= 1.5", "met": top_k_n_over_one >= 1.5},
        {"what": f"predict p99 at half the maximum rate, {n} processes against one", "figure": f"{p99_n:.2f} ms "
                 f"against {p99_one:.2f} ms", "target": "no worse", "met": p99_n <= p99_one},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--d", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--write-rate", type=float, default=2000, help="user records written a second during predict_while_writing")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--png", type=Path, help="latency distributions, drawn when matplotlib is installed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work, throwaway_broker(Settings.from_env(data=Path(work))) as base:
        settings = base.replace(namespace="bench-", partitions=8, d=args.d, items=args.items, edge_processes=1)
        topics.ensure(settings)
        write_states(settings, args.users)
        model = f"/v1/models/{settings.model}"
        rng = np.random.default_rng(2)
        uniform, zipf = draws(args.users, args.items, rng)

        def fresh_top_k() -> list[str]:  # users not asked before (but by chance), so the cache barely helps
            return [f"{model}/top_k?user={u}&k=10" for u in rng.integers(args.users, size=400_000).tolist()]

        with edge(settings, Path(work) / "edge.log") as port:
            drive(port, ["/healthz"], 2, args.concurrency)  # warm-up
            results = {"noop": drive(port, ["/healthz"], args.seconds, args.concurrency)}
            for name, (users, items) in (("", uniform), ("_zipf", zipf)):
                predict = [f"{model}/predict?user={u}&item={i}" for u, i in zip(users, items)]
                top = [f"{model}/top_k?user={u}&k=10" for u in users]
                results["predict" + name] = measured(port, lambda: drive(port, predict, args.seconds, args.concurrency))
                results["top_k" + name] = measured(port, lambda: drive(port, top, args.seconds, args.concurrency))
                if not name:  # the same, while the worker writes (the price of reading from another process)
                    with writing(settings, args.users, args.write_rate) as reached:
                        results["predict_while_writing"] = measured(port, lambda: drive(port, predict, args.seconds, args.concurrency))
                        results["predict_while_writing"]["writes_per_s"] = reached()
            results["top_k_at_half"] = measured(port, lambda: drive(
                port, fresh_top_k(), args.seconds, args.concurrency, rate=results["top_k"]["requests_per_s"] / 2))
        with edge(settings.replace(batching=False), Path(work) / "edge-unbatched.log") as port:
            drive(port, ["/healthz"], 2, args.concurrency)
            results["top_k_unbatched"] = measured(port, lambda: drive(port, fresh_top_k(), args.seconds, args.concurrency))
        # Every user and item a 36-character UUID (the version's items too), asked as the integers were.
        named = settings.replace(namespace="bench-uuid-", data=settings.data / "uuid-ids")
        named = named.replace(initial_version=uuid_version(named, named.data))
        topics.ensure(named)
        write_states(named, args.users, uuid_id)
        with edge(named, Path(work) / "edge-uuid.log") as port:
            drive(port, ["/healthz"], 2, args.concurrency)
            users, items = uniform
            asked = [f"{model}/predict?user={uuid_id(u)}&item={uuid_id(i)}" for u, i in zip(users, items)]
            results["predict_uuid"] = measured(port, lambda: drive(port, asked, args.seconds, args.concurrency))
        uuid_ratio = results["predict_uuid"]["requests_per_s"] / results["predict"]["requests_per_s"]
        users, items = uniform
        results["processes"] = {"items": args.items, **processes_run(settings, args, Path(work), {
            "predict": [f"{model}/predict?user={u}&item={i}" for u, i in zip(users, items)],
            "top_k": [f"{model}/top_k?user={u}&k=10" for u in users]})}
        # After the served runs: this process's edge opens the same RocksDB secondaries.
        results["breakdown"] = breakdown(settings, *uniform)
    for name, figures in results.items():
        if name in ("breakdown", "processes"):
            continue
        hits = f"   cache hits {figures['cache_hit_rate']:6.1%}" if "top_k" in name and "cache_hit_rate" in figures else ""
        print(f"{name:14} {figures['requests_per_s']:8,.0f} req/s   p50 {figures['p50_ms']:6.2f} ms   "
              f"p99 {figures['p99_ms']:6.2f} ms{hits}")
    ratio = results["predict"]["requests_per_s"] / results["noop"]["requests_per_s"]
    served = {name: 1e6 / results[name]["requests_per_s"] for name in ("noop", "predict")}
    print(f"where the time goes (µs a request): served, the edge's core busy: no-op {served['noop']:.0f}, predict "
          f"{served['predict']:.0f}, of it in predict's handler {results['predict']['handler_us']:.0f}; "
          f"in this process, the app alone: " + ", ".join(
              f"{name.removesuffix('_us').replace('_', ' ')} {value:.1f}" for name, value in results["breakdown"].items()))
    print(f"predict / no-op throughput: {ratio:.2f} (target at least 0.85); "
          f"top-k p99 at half its maximum rate: {results['top_k_at_half']['p99_ms']:.2f} ms (target at most 5); "
          f"top-k with / without adaptive batching: "
          f"{results['top_k']['requests_per_s'] / results['top_k_unbatched']['requests_per_s']:.2f}x")
    writing_ = results["predict_while_writing"]
    print(f"predict while the worker writes {writing_['writes_per_s']:,.0f} records/s: {writing_['requests_per_s']:,.0f} "
          f"req/s, {writing_['requests_per_s'] / results['predict']['requests_per_s']:.2f} of predict alone")
    print(f"predict with 36-character UUID ids: {results['predict_uuid']['requests_per_s']:,.0f} req/s, "
          f"{uuid_ratio:.2f} of integer ids (target at least 0.85)")
    checks = [{"what": "predict throughput with 36-character UUID ids against integer ids", "figure": round(uuid_ratio, 3),
               "target": ">= 0.85", "met": uuid_ratio >= 0.85}, *processes_checks(results["processes"])]
    print_checks(checks)
    write_json(args.json, {"concurrency": args.concurrency, "users": args.users, "items": args.items,
                           "d": args.d, **results, "predict_over_noop": ratio,
                           "predict_uuid_over_integer": uuid_ratio, "checks": checks})
    if args.png and plot(results, args.png):
        print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
