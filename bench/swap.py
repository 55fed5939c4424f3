"""A model swap under a steady stream: how long the live updates wait, and how long the swap takes.

1. Produce ``--backlog`` observations (100,000 users, 10,000 items, d=50) and let a worker apply
   them: its batched rate is the ceiling the swap's replay is held to.
2. Save a version with the same θ, no users and ``training_end`` 0 in every partition, so the
   swap replays everything; produce ``--rate`` events/s (2,000) throughout.
3. Activate it. During the swap (activation to the worker's "swapped" line): the longest
   produce-to-visible time and its p99, from the worker's histogram (an event that arrived
   when a stall began waits at least the stall, so the longest is a bound on the longest gap);
   the swap's time against the replay's own (replayed events / the batched rate); and the
   producer's time from produce to the broker's acknowledgement, the part of the latency that
   lies before the worker.
4. Produce more, to reach ``--sizes``' next figure, and swap again.

The first swap is a warm-up, not judged: a broker started for the run spends its first minutes
compiling Kafka's hot paths, on the cores the worker and the producer share, and its own
acknowledgements are then several times slower (a production broker is the warm one). Its
figures are reported beside the others (bench/README.md), the broker's acknowledgements with them.

    python bench/swap.py [--sizes 250000,1000000] [--json bench/results/swap.json]

Uses the broker at VELOX_BOOTSTRAP if set, else starts one of its own and stops it after.
"""

from __future__ import annotations

import argparse
import random
import re
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
from confluent_kafka import Message
from stream import applied, broker_settings, produce, progress, scrape, write_json

from velox import processes
from velox.control import topics, versions
from velox.control.versions import initial_version
from velox.kafka import clients
from velox.local.broker import free_bootstrap
from velox.model.store import ModelStore
from velox.schemas import observation
from velox.schemas.model_version import VersionInfo
from velox.schemas.observation import Observation
from velox.settings import Settings

USERS, ITEMS = 100_000, 10_000


def visible(port: int) -> list[tuple[float, float]]:
    samples = scrape(port)["velox_worker_visible_seconds"]
    return [(float(s.labels["le"]), s.value) for s in samples if s.name.endswith("_bucket")]


def window(before: list[tuple[float, float]], after: list[tuple[float, float]]) -> dict[str, float]:
    """p50, p99 and the highest bucket reached by the observations between two scrapes (ms)."""
    counts = [(le, a - b) for (le, a), (_, b) in zip(after, before)]
    total = counts[-1][1]
    figures = {}
    for name, q in (("p50_ms", 0.5), ("p99_ms", 0.99)):
        figures[name] = 1000 * next(le for le, count in counts if count >= q * total)
    figures["longest_ms"] = 1000 * next(le for le, count in counts if count >= total)
    figures["events"] = total
    return figures


def bare_version(settings: Settings) -> str:
    """Save θ with no users and training_end 0: a swap to it replays every observation."""
    empty = np.zeros(0, np.int64)
    version = replace(initial_version(settings), id=f"bare-{uuid.uuid4().hex[:6]}", user_ids=empty,
                      user_counts=empty, user_vectors=np.zeros((0, settings.d), np.float32))
    info = VersionInfo(id=version.id, created_at=time.time(), d=version.d,
                       training_end={p: 0 for p in range(settings.partitions)})
    ModelStore(settings.model_store).save(version, info)
    return version.id


class Steady(threading.Thread):
    """Observations at ``rate`` per second from one producer, each one's time from produce to the
    broker's acknowledgement kept: what the broker adds before the worker can see an event."""

    def __init__(self, settings: Settings, rate: float) -> None:
        super().__init__()
        self.settings, self.rate = settings, rate
        self.stop = threading.Event()
        self.acks: list[tuple[float, float]] = []  # (acknowledged at, seconds since produced)

    def run(self) -> None:
        producer = clients.producer(self.settings, on_delivery=self._acknowledged, **{"linger.ms": 1})
        rng = random.Random(5)
        started, sent = time.monotonic(), 0
        while not self.stop.is_set():
            seen = Observation(user=rng.randrange(USERS), item=rng.randrange(ITEMS), score=rng.randint(1, 5), time=sent)
            producer.produce(self.settings.topic("observations"), key=seen.key, value=observation.encode(seen))
            sent += 1
            producer.poll(max(sent / self.rate - (time.monotonic() - started), 0))
        producer.flush(30)

    def _acknowledged(self, error: object, message: Message) -> None:
        if error is None:
            now = time.time()
            self.acks.append((now, now - message.timestamp()[1] / 1000))

    def between(self, start: float, end: float) -> dict[str, float]:
        """p99 and longest produce-to-acknowledged time (ms) of the events acknowledged in [start, end]."""
        seconds = np.array([took for at, took in self.acks if start <= at <= end])
        return {"ack_p99_ms": round(1000 * float(np.quantile(seconds, 0.99)), 1),
                "ack_longest_ms": round(1000 * float(seconds.max()), 1)}


def swap(settings: Settings, port: int, log_file: Path, rate: float, ceiling: float,
         version_id: str | None = None) -> dict[str, float]:
    """A swap to ``version_id`` (default: a bare version, replaying everything) under ``rate`` events/s."""
    version_id = version_id or bare_version(settings)
    steady = Steady(settings, rate)
    steady.start()
    try:
        time.sleep(2)  # the steady stream is flowing
        before = visible(port)
        started = time.time()
        versions.activate(settings, version_id, reason="bench")
        done = re.compile(rf"swapped to version {version_id} in ([\d.]+) s: .* (\d+) observations re-applied")
        while not (found := done.search(log_file.read_text())):
            time.sleep(0.05)
        after = visible(port)
        ended = time.time()
    finally:
        steady.stop.set()
        steady.join()
    seconds, replayed = float(found.group(1)), int(found.group(2))
    replay_s = replayed / ceiling
    return {"replayed": replayed, "swap_s": seconds, "replay_alone_s": round(replay_s, 2),
            "ratio": round(seconds / replay_s, 3), **window(before, after), **steady.between(started, ended)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="250000,1000000")
    parser.add_argument("--rate", type=float, default=2_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    results = []
    warmup: dict[str, float] | None = None
    with broker_settings("swap") as base:
        settings = base.replace(namespace=f"bench{uuid.uuid4().hex[:6]}-", partitions=8, d=50, items=ITEMS,
                                worker_metrics_port=int(free_bootstrap().split(":")[1]))
        topics.ensure(settings)
        log_file = settings.data / "worker.log"
        worker = processes.spawn(settings, log_file, "worker")
        try:
            produced = 0
            for size in sizes:
                backlog = size - produced
                progress(f"producing {backlog:,} events (so that {size:,} came after the training end)")
                before = applied(settings.worker_metrics_port)
                produce(settings, settings.topic("observations"), backlog, USERS, ITEMS)
                started = time.perf_counter()
                while applied(settings.worker_metrics_port) < before + backlog:
                    if worker.poll() is not None:
                        raise SystemExit(f"worker exited; see {log_file}")
                    time.sleep(0.2)
                ceiling = backlog / (time.perf_counter() - started)
                produced = size
                progress(f"  worker applied them at {ceiling:,.0f} events/s; swapping under {args.rate:,.0f} events/s")
                if warmup is None:
                    warmup = swap(settings, settings.worker_metrics_port, log_file, args.rate, ceiling)
                    warmup |= {"since_training_end": size, "batched_rate": round(ceiling)}
                    progress(f"  warm-up swap (not judged): {warmup}")
                figures = swap(settings, settings.worker_metrics_port, log_file, args.rate, ceiling)
                figures |= {"since_training_end": size, "batched_rate": round(ceiling)}
                progress(f"  {figures}")
                results.append(figures)
                produced = figures["replayed"]  # what the topic holds now, near enough
        finally:
            processes.stop(worker)
    for r in results:
        print(f"swap of {r['replayed']:,} observations: {r['swap_s']:.1f} s against {r['replay_alone_s']:.1f} s "
              f"for the replay alone (ratio {r['ratio']:.2f}); during it, produce-to-visible p99 {r['p99_ms']:.0f} ms, "
              f"longest {r['longest_ms']:.0f} ms (histogram bucket); produce to the broker's acknowledgement p99 "
              f"{r['ack_p99_ms']:.0f} ms, longest {r['ack_longest_ms']:.0f} ms")
    write_json(args.json, {"rate": args.rate, "warmup": warmup, "swaps": results})


if __name__ == "__main__":
    main()
