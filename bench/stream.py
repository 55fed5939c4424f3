"""Sustained events per second of one worker, against a minimal loop doing the same math, in one run.

1. Produce ``--events`` observations for ``--users`` users over ``--items`` items (d = ``--d``).
2. Ceiling: a minimal loop in this process: confluent-kafka consumer, decode, load the record
   from rocksdict, the same ``Learner.observe``, encode, put. No changelog, no framework.
3. The real worker (`velox worker`, Faust, RocksDB table with its changelog) on the same topic,
   timed from its first applied event to its last (read from its Prometheus endpoint).
4. Latency: produce at a fixed rate (``--latency-rate``) for ``--latency-seconds``; the worker's
   histogram of Kafka timestamp to table write gives p50 and p99.

    python bench/stream.py [--events 1000000 --users 100000 --d 50] [--json bench/results/stream.json]

Uses the broker at VELOX_BOOTSTRAP if set, else starts one of its own and stops it after.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

from confluent_kafka import TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from rocksdict import Options, Rdict

from velox import kafka, processes, topics
from velox.broker import free_bootstrap, throwaway_broker
from velox.model.learner import Learner, make_rule
from velox.schemas import observation, user_state
from velox.schemas.observation import Observation
from velox.settings import Settings
from velox.versions import initial_version


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def broker_settings(work: Path) -> Iterator[Settings]:
    settings = Settings.from_env(data=work)
    if "VELOX_BOOTSTRAP" in os.environ:
        yield settings
        return
    with throwaway_broker(settings) as settings:
        yield settings


def produce(settings: Settings, topic: str, events: int, users: int, items: int, rate: float | None = None) -> None:
    producer = kafka.producer(settings, **({"linger.ms": 1} if rate else {"linger.ms": 20, "batch.num.messages": 10_000}))
    # An idempotent producer first needs a producer id from the broker; don't time that wait.
    kafka.create_topics(settings, {settings.topic("bench-warmup"): 1})
    producer.produce(settings.topic("bench-warmup"), value=b"warm-up")
    producer.flush(30)
    rng = random.Random(11)
    started = time.monotonic()
    for i in range(events):
        seen = Observation(user=rng.randrange(users), item=rng.randrange(items), score=rng.randint(1, 5), time=i)
        while True:
            try:
                producer.produce(topic, key=seen.key, value=observation.encode(seen))
                break
            except BufferError:
                producer.poll(0.05)
        if rate is not None:
            ahead = (i + 1) / rate - (time.monotonic() - started)
            if ahead > 0:
                producer.poll(ahead)
        elif i % 100_000 == 0:
            producer.poll(0)
            progress(f"  produced {i:,}")
    assert producer.flush(120) == 0


def minimal_loop(settings: Settings, topic: str, events: int, work: Path) -> float:
    """Events per second of the bare loop, from its first message to its last."""
    learner = Learner(initial_version(settings), make_rule(settings.rule, settings.learning_rate, settings.l2))
    consumer = kafka.consumer(settings, group=f"bench-minimal-{uuid.uuid4().hex[:6]}")
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.partitions)])
    dbs = {p: Rdict(str(work / f"minimal-{p}.db"), Options(raw_mode=True)) for p in range(settings.partitions)}
    done = 0
    started = None
    while done < events:
        for message in consumer.consume(10_000, timeout=1.0):
            if message.error():
                continue
            started = started or time.perf_counter()
            seen = observation.decode(message.value())
            db = dbs[message.partition()]
            stored = db.get(message.key())
            state = user_state.decode(stored) if stored is not None else None
            new, _ = learner.observe(state, seen.user, seen.item, seen.score, message.offset())
            db.put(message.key(), user_state.encode(new))
            done += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    for db in dbs.values():
        db.close()
    return events / elapsed


def scrape(port: int) -> dict[str, list]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def applied(port: int) -> float:
    try:
        return scrape(port)["velox_worker_events_applied"][0].value
    except (OSError, KeyError, IndexError):
        return 0.0


def visible_buckets(port: int) -> list[tuple[float, float]]:
    samples = scrape(port)["velox_worker_visible_seconds"]
    return [(float(s.labels["le"]), s.value) for s in samples if s.name.endswith("_bucket")]


def quantile(before: list[tuple[float, float]], after: list[tuple[float, float]], q: float) -> float:
    """The q-quantile of the observations between two scrapes, interpolated within its bucket."""
    counts = [(le, a - b) for (le, a), (_, b) in zip(after, before)]
    target = q * counts[-1][1]
    lower_edge, lower_count = 0.0, 0.0
    for le, count in counts:
        if count >= target:
            if le == float("inf"):
                return lower_edge
            share = (target - lower_count) / max(count - lower_count, 1e-9)
            return lower_edge + share * (le - lower_edge)
        lower_edge, lower_count = le, count
    return float("nan")


def run_worker(settings: Settings, topic: str, events: int, latency_rate: float, latency_seconds: float,
               users: int, items: int) -> dict[str, float]:
    port = int(free_bootstrap().split(":")[1])
    worker = processes.spawn(settings.replace(worker_metrics_port=port), settings.data / "worker.log", "worker")
    try:
        while applied(port) == 0:
            if worker.poll() is not None:
                raise SystemExit(f"worker exited; see {settings.data / 'worker.log'}")
            time.sleep(0.02)
        started = time.perf_counter()
        last_report = started
        while (count := applied(port)) < events:
            time.sleep(0.05)
            if time.perf_counter() - last_report > 5:
                progress(f"  worker applied {count:,.0f}")
                last_report = time.perf_counter()
        rate = events / (time.perf_counter() - started)
        progress(f"  worker: {rate:,.0f} events/s; latency at {latency_rate:,.0f} events/s for {latency_seconds:.0f} s")
        before = visible_buckets(port)
        produce(settings, topic, int(latency_rate * latency_seconds), users, items, rate=latency_rate)
        while applied(port) < events + int(latency_rate * latency_seconds):
            time.sleep(0.05)
        after = visible_buckets(port)
        return {"rate": rate, "p50_ms": 1000 * quantile(before, after, 0.5), "p99_ms": 1000 * quantile(before, after, 0.99)}
    finally:
        processes.stop(worker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--d", type=int, default=50)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--latency-rate", type=float, default=2_000)
    parser.add_argument("--latency-seconds", type=float, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="velox-bench-stream-"))
    try:
        with broker_settings(work) as base:
            settings = base.replace(namespace=f"bench{uuid.uuid4().hex[:6]}-", partitions=args.partitions,
                                    d=args.d, items=args.items)
            topics.ensure(settings)
            topic = settings.topic("observations")
            progress(f"producing {args.events:,} events for {args.users:,} users, {args.items:,} items, d={args.d}")
            produce(settings, topic, args.events, args.users, args.items)
            progress("minimal loop (ceiling)")
            ceiling = minimal_loop(settings, topic, args.events, work)
            progress(f"  minimal loop: {ceiling:,.0f} events/s")
            progress("velox worker")
            worker = run_worker(settings, topic, args.events, args.latency_rate, args.latency_seconds,
                                args.users, args.items)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "events": args.events, "users": args.users, "items": args.items, "d": args.d,
        "partitions": args.partitions, "worker_events_per_s": round(worker["rate"]),
        "minimal_loop_events_per_s": round(ceiling), "ratio": round(worker["rate"] / ceiling, 3),
        "latency_rate": args.latency_rate, "visible_p50_ms": round(worker["p50_ms"], 2),
        "visible_p99_ms": round(worker["p99_ms"], 2),
    }
    print(f"worker        {result['worker_events_per_s']:>9,} events/s")
    print(f"minimal loop  {result['minimal_loop_events_per_s']:>9,} events/s   ratio {result['ratio']:.2f}")
    print(f"produce-to-state-visible at {args.latency_rate:,.0f} events/s: "
          f"p50 {result['visible_p50_ms']:.1f} ms, p99 {result['visible_p99_ms']:.1f} ms")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
