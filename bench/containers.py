"""Model containers: what the hop to a replica costs, and what adaptive batching gains, in one run.

The model (bench/container_model.py) is a scikit-learn regressor whose per-call cost dominates a
one-row predict. In this process's event loop, as the edge calls it:

1. In-process: the model called directly. Its maximum rate, then its latency (p50, p99) at half
   of it, paced.
2. Through a container (``velox container run``, one replica) with the edge's own client
   (``velox.serving.container_client``): latency at the same paced rate; the hop is the difference.
3. Throughput with 128 requests in flight: batched (the batch size adapted, AIMD) against one
   input per call (the size held at 1).
4. The RPC alone, one input per call at ``RPC_RATE`` (each call alone on its connection): ours (length-prefixed MessagePack on a
   kept-open TCP connection) against HTTP/1.1 keep-alive to the same model (bench/http_replica.py,
   uvicorn and Starlette, the same MessagePack bodies): what chose the RPC.
5. Under load (issue 41), for a model with a planted cost per call (``container_model.planted``)
   and the scikit-learn example (examples/sklearn_ratings.py, trained here on ml-100k; skipped
   with the reason where it is absent), with 1 and 2 replicas: the model's own capacity in-process
   (calls/s × inputs per call at the best batch size, up to 128, the most requests that wait
   here); then 1, 8, 32 and 128 connections (callers asking again as soon as answered), and
   Poisson arrivals at 0.25, 0.5 and 0.75 of what 128 connections got, sent by a process of
   their own (bench/container_arrivals.py): requests/s, batch sizes,
   p50/p99, defaults by cause, against an app's objective of ``APP_SLO_MS``. Its targets are
   the JSON's ``checks``.

    python bench/containers.py [--json bench/results/containers.json]

Uses the broker at VELOX_BOOTSTRAP if set, else starts one of its own and stops it after.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from container_load import capacity, checks, sweep
from container_model import model, planted
from stream import broker_settings, print_checks, progress, write_json

from velox import processes
from velox.control import container_registry as registry
from velox.local.broker import free_bootstrap
from velox.schemas.container_rpc import Call, Input, decode_reply, frame
from velox.serving.batching import AdaptiveLimit
from velox.serving.container_client import Connection, Containers
from velox.settings import Settings

SLO_S = 10.0  # long: these figures are times and rates, not answers within an objective (section 5 has those)
NAME = "bench-gbm"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-100k"
RPC_RATE = 200.0  # calls a second: HTTP/1.1 answers one call at a time per connection, and falls behind faster


async def paced(call, rate: float, seconds: float) -> np.ndarray:
    """Latencies (s) of calls started at ``rate`` per second for ``seconds``, each with a fresh input."""
    latencies: list[float] = []
    tasks = []
    started = time.perf_counter()

    async def one(n: int) -> None:
        begun = time.perf_counter()
        await call(Input(n, n % 1000 + 1))
        latencies.append(time.perf_counter() - begun)

    for n in range(int(rate * seconds)):
        ahead = started + n / rate - time.perf_counter()
        if ahead > 0:
            await asyncio.sleep(ahead)
        tasks.append(asyncio.ensure_future(one(n)))
    await asyncio.gather(*tasks)
    return np.array(latencies)


async def saturated(call, in_flight: int, seconds: float) -> float:
    """Calls per second with ``in_flight`` callers, each calling again as soon as answered."""
    done = 0
    counter = iter(range(10**9))
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            n = next(counter)
            await call(Input(n, n % 1000 + 1))
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(in_flight)))
    return done / (time.perf_counter() - started)


async def rpc(address: str, http_port: int, rate: float, seconds: float) -> dict[str, float]:
    """p50 and p99 (ms) of one-input calls, framed TCP against HTTP/1.1 keep-alive."""
    framed = Connection(address)

    async def over_tcp(one: Input) -> float:
        return (await framed.call([one])).outputs[0]

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=60) as client:
        async def over_http(one: Input) -> float:
            body = frame(Call(0, [one]))[4:]
            return decode_reply((await client.post("/call", content=body)).content).outputs[0]

        await saturated(over_http, 1, 1.0)  # connection and warm-up
        await saturated(over_tcp, 1, 1.0)
        times = {"tcp": await paced(over_tcp, rate, seconds), "http": await paced(over_http, rate, seconds)}
    framed.close()
    return {f"rpc_{kind}_p{q}_ms": 1000 * float(np.percentile(t, q)) for kind, t in times.items() for q in (50, 99)}


async def measure(settings: Settings, seconds: float, http_port: int) -> dict[str, float]:
    async def in_process(one: Input) -> float:
        return model([one])[0]

    containers = Containers(settings.replace(cache_entries=0))
    deadline = time.monotonic() + 60
    while registry.serving(containers.table.rows, NAME, time.time()) is None:
        assert time.monotonic() < deadline, "the container never registered"
        await asyncio.sleep(0.1)

    async def through_container(one: Input) -> float:
        return (await containers.score(NAME, one, SLO_S))[1]

    try:
        await saturated(through_container, 8, 1.0)  # connection and warm-up
        most = await saturated(in_process, 1, seconds)
        progress(f"  in-process maximum {most:,.0f} calls/s; paced at half of it")
        local = await paced(in_process, most / 2, seconds)
        hop = await paced(through_container, most / 2, seconds)
        progress("  128 in flight: batched, then one input per call")
        batched = await saturated(through_container, 128, seconds)
        for batcher in containers.batchers.values():
            batcher.limit = AdaptiveLimit(1, 1)
        single = await saturated(through_container, 128, seconds)
        address = registry.serving(containers.table.rows, NAME, time.time())[1][0].address  # type: ignore[index]
        rate = min(RPC_RATE, most / 2)  # a loaded machine's model may not keep up with RPC_RATE
        progress(f"  the RPC alone at {rate:.0f} calls/s: framed TCP, then HTTP/1.1")
        protocols = await rpc(address, http_port, rate, seconds)
    finally:
        containers.disconnect()
        containers.close()
    return {"in_process_max_per_s": most, "rate": most / 2,
            "in_process_p50_ms": 1000 * float(np.percentile(local, 50)),
            "in_process_p99_ms": 1000 * float(np.percentile(local, 99)),
            "container_p50_ms": 1000 * float(np.percentile(hop, 50)),
            "container_p99_ms": 1000 * float(np.percentile(hop, 99)),
            "batched_per_s": batched, "unbatched_per_s": single, **protocols}


def under_load(settings: Settings, seconds: float) -> dict[str, Any]:
    """Issue 41's sweep for each model with 1 and 2 replicas, and the model's in-process capacity."""
    models: dict[str, tuple[str, Any]] = {"planted": ("container_model:planted", planted)}
    skipped = {}
    if (DATA / "u.data").exists():
        sys.path.append(str(Path(__file__).resolve().parents[1]))  # the checkout's examples/, as the replicas'
        from examples.sklearn_ratings import GenreModel, train

        train(DATA, settings.data / "genre_gbm.pkl")
        (settings.data / "genre_gbm.py").write_text("from examples.sklearn_ratings import GenreModel\n"
                                                    f"model = GenreModel({str(settings.data / 'genre_gbm.pkl')!r})\n")
        models["sklearn example"] = ("genre_gbm:model", GenreModel(settings.data / "genre_gbm.pkl").predict_batch)
    else:
        skipped["sklearn example"] = f"MovieLens 100k is not at {DATA}"
        progress(f"  the scikit-learn example is skipped: {skipped['sklearn example']}")
    found: dict[str, Any] = {"models": {}, "checks": [], "skipped": skipped}
    # The edge's client under test runs in this process, beside the example's fit and in-process
    # model (about 158,000 objects an edge does not hold): each full collection over them paused
    # the client about 90 ms. They are left out of the collector's passes, as an edge has none.
    gc.freeze()
    for label, (target, in_process) in models.items():
        own = capacity(in_process, seconds)
        progress(f"  {label}: in-process {own['inputs_per_s']:,.0f} inputs/s in calls of {own['best_batch']}")
        found["models"][label] = {"capacity": own, "replicas": {}}
        for replicas in (1, 2):
            name = f"load-{label.split()[0]}-{replicas}"
            container = processes.spawn(settings, settings.data / f"{name}.log", "container", "run", target,
                                        "--name", name, "--replicas", str(replicas))
            containers = Containers(settings.replace(cache_entries=0))
            try:
                progress(f"  {label}, {replicas} replica(s):")
                run = asyncio.run(sweep(containers, name, seconds / 2))
            finally:
                containers.close()
                processes.stop(container)
            found["models"][label]["replicas"][str(replicas)] = run
            found["checks"] += checks(label, replicas, own, run)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5, help="of each measurement (each load point: half)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with broker_settings("containers") as base:
        settings = base.replace(namespace=f"bench{uuid.uuid4().hex[:6]}-")
        # The replicas import bench/container_model.py as this process does, the example's module
        # from the checkout and the trained example from the scratch folder.
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent),
                                                                 str(Path(__file__).resolve().parents[1]),
                                                                 str(base.data), os.environ.get("PYTHONPATH")]))
        under = under_load(settings, args.seconds)
        container = processes.spawn(settings, base.data / "container.log", "container", "run",
                                    "container_model:model", "--name", NAME, "--replicas", "1")
        http_port = int(free_bootstrap().split(":")[1])
        http = subprocess.Popen([sys.executable, str(Path(__file__).parent / "http_replica.py"), str(http_port)])
        try:
            figures = asyncio.run(measure(settings, args.seconds, http_port))
        finally:
            processes.stop(container)
            processes.stop(http)
        figures["under_load"] = under
    f = figures
    print(f"at {f['rate']:,.0f} calls/s (half the in-process maximum {f['in_process_max_per_s']:,.0f}): in-process "
          f"p50 {f['in_process_p50_ms']:.2f} ms, p99 {f['in_process_p99_ms']:.2f}; through a container p50 "
          f"{f['container_p50_ms']:.2f} ms, p99 {f['container_p99_ms']:.2f}: the hop adds "
          f"{f['container_p50_ms'] - f['in_process_p50_ms']:.2f} ms at p50")
    print(f"the RPC alone, one input per call: length-prefixed MessagePack over TCP p50 {f['rpc_tcp_p50_ms']:.2f} ms, "
          f"p99 {f['rpc_tcp_p99_ms']:.2f}; HTTP/1.1 keep-alive p50 {f['rpc_http_p50_ms']:.2f} ms, "
          f"p99 {f['rpc_http_p99_ms']:.2f}")
    print(f"128 in flight: batched {f['batched_per_s']:,.0f} calls/s, one input per call {f['unbatched_per_s']:,.0f} "
          f"(gain {f['batched_per_s'] / f['unbatched_per_s']:.1f}x)")
    figures["checks"] = figures["under_load"].pop("checks")
    print_checks(figures["checks"])
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
