"""The edge under load: a no-op route of the same app (the ceiling), predict, and top-k, in one run.

100,000 users with d = 50 weights are written where a worker keeps them; the edge (`velox serve`,
its own process) reads them as RocksDB secondaries; 10,000 items. A small asyncio HTTP/1.1
keep-alive client (wrk is not installed here) drives each route at fixed concurrency for a
fixed time, then top-k again at half its maximum rate for its latency.

    python bench/serve.py [--seconds 10 --concurrency 16] [--json bench/results/serve.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from velox import kafka, owners
from velox.broker import free_bootstrap, throwaway_broker
from velox.schemas import user_state
from velox.schemas.user_state import UserState, table_path
from velox.settings import Settings
from velox.streams.store import PartitionStore
from velox.streams.worker import ensure_topics
from velox.versions import initial_version


def write_states(settings: Settings, users: int) -> None:
    """Records as the worker writes them, on the initial version, one RocksDB per partition, announced as its."""
    rng = np.random.default_rng(1)
    version = initial_version(settings).id
    stores = {p: PartitionStore(table_path(settings.data, p)) for p in range(settings.partitions)}
    for user in range(users):
        key = str(user).encode()
        state = UserState(version, rng.normal(0, 0.3, settings.d).astype(np.float32), count=1, offset=user)
        stores[kafka.partition_for(key, settings.partitions)].put(key, user_state.encode(state))
    for store in stores.values():
        store.close()
    owners.ensure_topic(settings)
    owners.announce(settings, kafka.producer(settings), list(range(settings.partitions)))


async def one_connection(port: int, paths: list[str], deadline: float, latencies: list[float],
                         interval: float | None) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    next_at = time.perf_counter()
    while time.perf_counter() < deadline:
        if interval is not None:
            next_at += interval
            await asyncio.sleep(max(next_at - time.perf_counter(), 0))
        path = random.choice(paths)
        started = time.perf_counter()
        writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"{path} answered {head[:40]!r}")
        latencies.append(time.perf_counter() - started)
    writer.close()


def drive(port: int, paths: list[str], seconds: float, concurrency: int, rate: float | None = None) -> dict[str, float]:
    latencies: list[float] = []
    interval = None if rate is None else concurrency / rate

    async def run() -> None:
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*(one_connection(port, paths, deadline, latencies, interval) for _ in range(concurrency)))

    asyncio.run(run())
    ms = np.array(latencies) * 1000
    return {"requests_per_s": len(latencies) / seconds, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--d", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work, throwaway_broker(Settings.from_env(data=Path(work))) as base:
        settings = base.replace(namespace="bench-", partitions=8, d=args.d, items=args.items)
        ensure_topics(settings)
        write_states(settings, args.users)
        port = int(free_bootstrap().split(":")[1])
        with open(Path(work) / "edge.log", "wb") as out:
            edge = subprocess.Popen([sys.executable, "-m", "velox.cli", "serve", "--port", str(port)],
                                    env={**os.environ, **settings.to_env()}, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.2)
            rng = random.Random(2)
            model = f"/v1/models/{settings.model}"
            predict = [f"{model}/predict?user={rng.randrange(args.users)}&item={rng.randrange(args.items)}"
                       for _ in range(5000)]
            top = [f"{model}/top_k?user={rng.randrange(args.users)}&k=10" for _ in range(5000)]
            drive(port, ["/healthz"], 2, args.concurrency)  # warm-up
            results = {
                "noop": drive(port, ["/healthz"], args.seconds, args.concurrency),
                "predict": drive(port, predict, args.seconds, args.concurrency),
                "top_k": drive(port, top, args.seconds, args.concurrency),
            }
            results["top_k_at_half"] = drive(port, top, args.seconds, args.concurrency,
                                             rate=results["top_k"]["requests_per_s"] / 2)
        finally:
            edge.send_signal(signal.SIGTERM)
            edge.wait(30)
    for name, figures in results.items():
        print(f"{name:14} {figures['requests_per_s']:8,.0f} req/s   p50 {figures['p50_ms']:6.2f} ms   "
              f"p99 {figures['p99_ms']:6.2f} ms")
    ratio = results["predict"]["requests_per_s"] / results["noop"]["requests_per_s"]
    print(f"predict / no-op throughput: {ratio:.2f} (target at least 0.85); "
          f"top-k p99 at half its maximum rate: {results['top_k_at_half']['p99_ms']:.2f} ms (target at most 5)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"concurrency": args.concurrency, "users": args.users, "items": args.items,
                                         "d": args.d, **results, "predict_over_noop": ratio}, indent=2) + "\n")


if __name__ == "__main__":
    main()
