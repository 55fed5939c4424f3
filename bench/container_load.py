"""bench/containers.py's load sweep (issue 41): a model with a fixed cost per call behind the edge's
client, at several connections and paced rates, against the model's own batched capacity.

Requests go through ``velox.serving.container_client`` in this process's event loop, as the
edge's app routes call it (the HTTP server left out: its cost is bench/serve.py's), with the
container's share of the app's objective: closed loops from callers in the same loop, paced
arrivals from a process of their own (bench/container_arrivals.py). Each figure comes with the model's capacity measured
in-process in the same run.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from container_arrivals import ANSWERED, ASKED
from stream import progress

from velox.control import container_registry as registry
from velox.schemas.container_rpc import Input
from velox.serving.application_routes import CONTAINER_SHARE
from velox.serving.container_client import ContainerFailed, Containers

APP_SLO_MS = 100.0  # an app's default objective
CONNECTIONS = (1, 8, 32, 128)
PACED = (0.25, 0.5, 0.75)  # of what the most connections got: below 0.8 of the measured capacity
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128)


def inputs(n: int, count: int) -> list[Input]:
    """Distinct (user, item) pairs from ``n`` on, items within ml-100k's catalog."""
    return [Input(1 + k % 943, 1 + k % 1682) for k in range(n, n + count)]


def capacity(model: Callable[[list[Input]], Sequence[float]], seconds: float) -> dict[str, Any]:
    """The model called in-process, one call at a time, at each batch size: inputs/s at the best."""
    rates = {}
    for size in BATCHES:
        model(inputs(0, size))
        calls, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds / len(BATCHES):
            model(inputs(calls * size, size))
            calls += 1
        rates[size] = calls * size / elapsed
    best = max(rates, key=rates.__getitem__)
    return {"inputs_per_s": rates[best], "best_batch": best, "by_batch": rates}


class Load:
    """Requests to one container through the edge's client; what each call carried, what each answer took."""

    def __init__(self, containers: Containers, name: str) -> None:
        self.containers, self.name = containers, name
        self.slo_s = CONTAINER_SHARE * APP_SLO_MS / 1000
        self.numbers = iter(range(10**9))
        self.sizes: list[int] = []
        calling = containers.call

        async def counted(model: str, replica: Any, batch: list[Input]) -> list[float]:
            self.sizes.append(len(batch))
            return await calling(model, replica, batch)

        containers.call = counted  # type: ignore[method-assign]

    async def cause(self) -> str:
        """One request through the client: the cause of its default, empty if the container answered."""
        try:
            await self.containers.score(self.name, inputs(next(self.numbers), 1)[0], self.slo_s)
        except ContainerFailed as exc:
            return exc.cause
        return ""

    async def closed(self, connections: int, seconds: float) -> dict[str, Any]:
        """Callers in this event loop, each asking again as soon as answered."""
        latencies: list[float] = []
        causes: Counter[str] = Counter()
        self.sizes.clear()
        started = time.perf_counter()
        deadline = started + seconds

        async def caller() -> None:
            while (begun := time.perf_counter()) < deadline:
                if cause := await self.cause():
                    causes[cause] += 1
                latencies.append(time.perf_counter() - begun)  # a default's time too: it is the app's answer

        await asyncio.gather(*(caller() for _ in range(connections)))
        return self._figures({"connections": connections}, latencies, causes, time.perf_counter() - started)

    async def paced(self, rate: float, seconds: float) -> dict[str, Any]:
        """Poisson arrivals at ``rate``, each request on its own, as HTTP requests come: sent by a
        process of their own (bench/container_arrivals.py) to a socket this loop reads."""
        asking: set[asyncio.Future[None]] = set()

        class Front(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport, self.buffer, self.replies = transport, b"", list[bytes]()

            def data_received(self, data: bytes) -> None:
                self.buffer += data
                whole = len(self.buffer) - len(self.buffer) % ASKED.size
                for (number,) in ASKED.iter_unpack(self.buffer[:whole]):
                    task = asyncio.ensure_future(self.answer(number))
                    asking.add(task)
                    task.add_done_callback(asking.discard)
                self.buffer = self.buffer[whole:]

            async def answer(self, number: int) -> None:
                cause = (await load.cause()).encode()
                if not self.replies:  # one write for the answers of this turn of the loop
                    asyncio.get_running_loop().call_soon(self.flush)
                self.replies.append(ANSWERED.pack(number, len(cause)) + cause)

            def flush(self) -> None:
                self.transport.write(b"".join(self.replies))  # type: ignore[attr-defined]
                self.replies.clear()

        load = self
        server = await asyncio.get_running_loop().create_server(Front, "127.0.0.1", 0)
        self.sizes.clear()
        try:
            arrivals = await asyncio.create_subprocess_exec(
                sys.executable, str(Path(__file__).with_name("container_arrivals.py")),
                str(server.sockets[0].getsockname()[1]), str(rate), str(seconds), stdout=asyncio.subprocess.PIPE)
            out, _ = await arrivals.communicate()
        finally:
            server.close()
        found = json.loads(out)
        return self._figures({"rate": rate}, found["latencies"], Counter(found["causes"]), found["seconds"])

    def _figures(self, point: dict[str, Any], latencies: list[float], causes: Counter[str],
                 elapsed: float) -> dict[str, Any]:
        ms = 1000 * np.array(latencies)
        answered = len(latencies) - sum(causes.values())  # by the container: its throughput, defaults left out
        return {**point, "requests_per_s": len(latencies) / elapsed, "answered_per_s": answered / elapsed,
                "answers": len(latencies),
                "defaults": dict(causes), "default_share": sum(causes.values()) / max(len(latencies), 1),
                "batch_p50": float(np.median(self.sizes)) if self.sizes else 0.0,
                "batch_max": max(self.sizes, default=0), "p50_ms": float(np.percentile(ms, 50)),
                "p99_ms": float(np.percentile(ms, 99))}


async def sweep(containers: Containers, name: str, seconds: float) -> dict[str, Any]:
    """Every connection count, then the paced rates below the most connections' throughput."""
    deadline = time.monotonic() + 60
    while registry.serving(containers.table.rows, name, time.time()) is None:
        assert time.monotonic() < deadline, f"container {name} never registered"
        await asyncio.sleep(0.1)
    load = Load(containers, name)
    await load.closed(8, 1.0)  # connections, the model's first call, and the batch limit's climb
    points = []
    for connections in CONNECTIONS:
        points.append(await load.closed(connections, seconds))
        progress(f"    {connections} connections: {points[-1]['requests_per_s']:,.0f} req/s, "
                 f"batch p50 {points[-1]['batch_p50']:.0f}, p99 {points[-1]['p99_ms']:.1f} ms, "
                 f"defaults {points[-1]['defaults']}")
    saturated = points[-1]["answered_per_s"]
    paced = []
    for share in PACED:
        paced.append({**await load.paced(share * saturated, seconds), "share_of_saturated": share})
        progress(f"    paced at {share:.2f} of it: {paced[-1]['requests_per_s']:,.0f} req/s, "
                 f"p99 {paced[-1]['p99_ms']:.1f} ms, defaults {paced[-1]['defaults']}")
    return {"connections": points, "paced": paced, "saturated_per_s": saturated}


def checks(model: str, replicas: int, own: dict[str, Any], run: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 41's targets for one model and replica count."""
    label = f"{model}, {replicas} replica{'s' * (replicas > 1)}"
    paced, waiting = run["paced"], [p for p in run["connections"] if p["connections"] > 1]
    defaults = max(p["default_share"] for p in paced)
    p99 = max(p["p99_ms"] for p in paced)
    ratio = run["saturated_per_s"] / own["inputs_per_s"]
    batch = min(p["batch_p50"] for p in waiting)
    return [
        {"what": f"{label}: defaults below 0.8 of the measured capacity (paced, worst)",
         "figure": f"{defaults:.2%}", "target": "≤ 1%", "met": defaults <= 0.01},
        {"what": f"{label}: p99 below 0.8 of the measured capacity (paced, worst)",
         "figure": f"{p99:.1f} ms", "target": f"≤ {APP_SLO_MS:g} ms (the app's objective)", "met": p99 <= APP_SLO_MS},
        {"what": f"{label}: throughput at {CONNECTIONS[-1]} connections against the model's in-process batched "
                 f"capacity ({own['inputs_per_s']:,.0f} inputs/s in calls of {own['best_batch']})",
         "figure": f"{run['saturated_per_s']:,.0f} req/s, {ratio:.2f}", "target": "≥ 0.7", "met": ratio >= 0.7},
        {"what": f"{label}: median batch size with more than one request waiting ({', '.join(str(p['connections']) for p in waiting)} connections, smallest)",
         "figure": f"{batch:g}", "target": "> 1", "met": batch > 1},
    ]
