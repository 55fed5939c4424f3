"""Sustained events per second of one worker, against a minimal loop doing the same math, in one run.

For each update rule (``--rules sgd,rls,implicit``; ``implicit`` on an implicit system, its
events views, clicks and purchases instead of ratings):

1. Produce ``--events`` observations for ``--users`` users over ``--items`` items (d = ``--d``).
2. Ceiling: a minimal per-event loop in this process: confluent-kafka consumer, decode, load
   the record from rocksdict, ``Learner.observe``, encode, put. No changelog, no framework.
3. The real worker (`velox worker`: batches, RocksDB tables, changelog, exactly once) on the
   same topic, timed from its first applied event to its last (read from its Prometheus
   endpoint); its resident memory at the first event and the last, and the user-state record
   bytes it wrote per event, to its table and to the changelog.
4. Latency (first rule only): produce at ``--latency-rate`` for ``--latency-seconds``; the
   worker's histogram of Kafka timestamp to table write gives p50 and p99, and its loop's steps
   meanwhile (``velox_worker_stage_seconds``: fetch wait, apply, commit, swap, GC pauses) where a
   late event's time went: the steps over 20 ms of each, and the longest; and the worker's seconds
   on a core against its seconds ready to run but waiting for one (Linux's schedstat).
5. Recovery: a second worker on an empty data directory rebuilds the tables from the changelog.
6. sgd only: Quix Streams doing the same per-event update on the same topic (bench/quix_worker.py,
   in a virtualenv of its own under the cache), exactly-once and at-least-once.
7. First rule only, unless ``--engines kafka``: the Faust engine (`velox worker --engine faust`) on
   a topic of the same events, and on it a do-nothing Faust agent (bench/faust_noop.py: Faust's own
   per-event ceiling); its latency as in 4; its recovery of an empty data directory (start to every
   partition ready).
8. ``--rounds`` (default 3): each worker rate of 3 measured again, on systems of their own, the
   rules and the UUID ids in turn, round after round; each rate (and each ratio between them) is
   then from the medians: a single run's rate moved by a third from one run to the next here.

    python bench/stream.py [--events 1000000 --users 100000 --d 50] [--json bench/results/stream.json]

Freshness alone (``--latency-runs N``): N runs in a row, each on a new broker of its own (or on a
new namespace of VELOX_BOOTSTRAP): ``--events`` produced and applied first as a warm-up, then 4
above for each engine of ``--engines``; a check per run that the kafka engine's p99 is at most 50 ms.

    python bench/stream.py --latency-runs 3 --events 20000 --engines kafka --json bench/results/freshness.json

Uses the broker at VELOX_BOOTSTRAP if set, else starts one of its own and stops it after.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from rocksdict import Options, Rdict

from velox import processes
from velox.control import topics
from velox.control.versions import initial_version
from velox.kafka import clients, topic_admin
from velox.local.broker import free_bootstrap, throwaway_broker
from velox.model.learner import Learner, event_of, make_rule
from velox.schemas import ids, observation, user_state
from velox.schemas.feedback import Feedback
from velox.schemas.observation import Observation
from velox.settings import Settings


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_json(path: Path | None, figures: dict[str, Any]) -> None:
    """The run's figures where ``--json`` points (nothing without it), for bench/report.py."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(figures, indent=2) + "\n")


def print_checks(checks: list[dict[str, Any]]) -> None:
    """A benchmark's targets, one line each, as its JSON's ``checks`` hold them."""
    for c in checks:
        print(f"{'met' if c['met'] else 'NOT MET':8} {c['what']}: {c['figure']} (target {c['target']})")


@contextmanager
def broker_settings(name: str) -> Iterator[Settings]:
    """Settings on a scratch folder of the benchmark ``name`` (removed after), on the broker at
    VELOX_BOOTSTRAP if set, else on a throwaway one."""
    work = Path(tempfile.mkdtemp(prefix=f"velox-bench-{name}-"))
    try:
        settings = Settings.from_env(data=work)
        if "VELOX_BOOTSTRAP" in os.environ:
            yield settings
        else:
            with throwaway_broker(settings) as settings:
                yield settings
    finally:
        shutil.rmtree(work, ignore_errors=True)


def uuid_id(number: int) -> str:
    """A 36-character UUID standing for an integer id (scattered: no order shared with the integers)."""
    return str(uuid.UUID(int=(number * 0x9E3779B97F4A7C15 + 1) % 2**128))


def uuid_version(settings: Settings, folder: Path) -> Path:
    """The settings' initial version with every item named by a UUID, written as a version file
    (VELOX_INITIAL_VERSION): string ids cost the same scoring as integer ids, the items known."""
    version = initial_version(settings)
    names = {ids.code(uuid_id(item)): uuid_id(item) for item in version.item_ids.tolist()}
    renamed = dataclasses.replace(version, item_ids=np.fromiter(names, np.int64, len(names)), names=names)
    path = folder / "uuid-items.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(renamed.to_npz())
    return path


def send(producer: Producer, topic: str, seen: Observation) -> None:
    """One observation, keyed by its user as any producer writes it; waits while the queue is full."""
    while True:
        try:
            producer.produce(topic, key=seen.key, value=observation.encode(seen))
            return
        except BufferError:
            producer.poll(0.05)


def produce(settings: Settings, topic: str, events: int, users: int, items: int, rate: float | None = None,
            named: Callable[[int], int | str] = int) -> None:
    """``events`` ratings of random users and items (each id as ``named`` gives it); on an implicit
    system, interactions of a kind the system knows instead."""
    producer = clients.producer(settings, **({"linger.ms": 1} if rate else {"linger.ms": 20, "batch.num.messages": 10_000}))
    # An idempotent producer first needs a producer id from the broker; don't time that wait.
    topic_admin.create_topics(settings, {settings.topic("bench-warmup"): 1})
    producer.produce(settings.topic("bench-warmup"), value=b"warm-up")
    producer.flush(30)
    rng = random.Random(11)
    kinds = sorted(settings.confidences)
    started = time.monotonic()
    for i in range(events):
        seen = Observation(user=named(rng.randrange(users)), item=named(rng.randrange(items)), time=i,
                           **({"kind": rng.choice(kinds)} if settings.implicit else {"score": rng.randint(1, 5)}))
        send(producer, topic, seen)
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
    rule = make_rule(**settings.rule_params())
    learner = Learner(initial_version(settings), rule)
    feedback = Feedback(settings.implicit, settings.confidences)
    consumer = clients.consumer(settings, group=f"bench-minimal-{uuid.uuid4().hex[:6]}")
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.partitions)])
    dbs = {p: Rdict(str(work / f"minimal-{p}.db"), Options(raw_mode=True)) for p in range(settings.partitions)}
    done = 0
    started = None
    while done < events:
        for message in consumer.consume(10_000, timeout=1.0):
            if message.error():
                continue
            started = started or time.perf_counter()
            event = event_of(observation.decode(message.value()), message.offset(), feedback)
            db = dbs[message.partition()]
            stored = db.get(message.key())
            state = user_state.decode(stored) if stored is not None else None
            new, _ = learner.observe(state, event.user, event.item, event.score, event.offset, event.confidence)
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


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024


def run_worker(settings: Settings, topic: str, events: int, latency_rate: float, latency_seconds: float,
               users: int, items: int) -> dict[str, float]:
    """The worker's rate over ``events``, its memory, its record bytes per event, then its latency."""
    with worker_process(settings) as (worker, port):
        result = applying(worker, port, events, settings.data / "worker.log")
        progress(f"  worker: {result['rate']:,.0f} events/s; latency at {latency_rate:,.0f} events/s for {latency_seconds:.0f} s")
        if latency_seconds > 0:
            result |= latency(settings, topic, worker, port, latency_rate, latency_seconds, users, items)
        return result


@contextmanager
def worker_process(settings: Settings) -> Iterator[tuple[subprocess.Popen, int]]:
    """`velox worker` with its metrics on a free port (yielded with the process), until the block ends."""
    port = int(free_bootstrap().split(":")[1])
    worker = processes.spawn(settings.replace(worker_metrics_port=port), settings.data / "worker.log", "worker")
    try:
        yield worker, port
    finally:
        processes.stop(worker)


def applying(worker: subprocess.Popen, port: int, events: int, log: Path) -> dict[str, float]:
    """The worker's rate from its first applied event to its ``events``-th, its memory, its record bytes per event."""
    while applied(port) == 0:
        if worker.poll() is not None:
            raise SystemExit(f"worker exited; see {log}")
        time.sleep(0.02)
    started = time.perf_counter()
    rss_start = rss_mb(worker.pid)
    last_report = started
    rss_half = None
    while (count := applied(port)) < events:
        time.sleep(0.2)  # each scrape costs the worker a little
        if worker.poll() is not None:
            raise SystemExit(f"worker exited; see {log}")
        if rss_half is None and count >= events / 2:
            rss_half = rss_mb(worker.pid)
        if time.perf_counter() - last_report > 5:
            progress(f"  worker applied {count:,.0f}")
            last_report = time.perf_counter()
    rate = events / (time.perf_counter() - started)
    written = {s.labels["to"]: s.value for s in scrape(port)["velox_worker_record_bytes"] if s.name.endswith("_total")}
    return {"rate": rate, "rss_start_mb": rss_start, "rss_half_mb": rss_half or rss_start, "rss_end_mb": rss_mb(worker.pid),
            "table_bytes_per_event": written["table"] / events, "changelog_bytes_per_event": written["changelog"] / events}


def rounded(figures: dict[str, Any]) -> dict[str, Any]:
    return {name: round(value, 2) if isinstance(value, float) else value for name, value in figures.items()}


def latency(settings: Settings, topic: str, worker: subprocess.Popen, port: int, rate: float, seconds: float,
            users: int, items: int) -> dict[str, Any]:
    """Produce-to-visible p50 and p99 (ms) of events produced at ``rate`` for ``seconds`` to a worker
    that has applied everything before them; where the worker's time went meanwhile (``where``); and
    its seconds on a core against its seconds ready to run but waiting for one (``cpu``: a step that
    a wait for a core lengthened looks long in ``where`` too)."""
    before_count, before, stages_before, cpu_before = applied(port), visible_buckets(port), stages(port), cpu(worker.pid)
    produce(settings, topic, int(rate * seconds), users, items, rate=rate)
    while applied(port) < before_count + int(rate * seconds):
        time.sleep(0.05)
    after, stages_after, cpu_after = visible_buckets(port), stages(port), cpu(worker.pid)
    return {"p50_ms": 1000 * quantile(before, after, 0.5), "p99_ms": 1000 * quantile(before, after, 0.99),
            "where": where(stages_before, stages_after),
            "cpu": {"running_s": round(cpu_after[0] - cpu_before[0], 2), "waiting_s": round(cpu_after[1] - cpu_before[1], 2)}}


def cpu(pid: int) -> tuple[float, float]:
    """Seconds the process's threads have run on a core, and waited ready for one (Linux's schedstat)."""
    running = waiting = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            on, queued, _ = (task / "schedstat").read_text().split()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        running, waiting = running + int(on), waiting + int(queued)
    return running / 1e9, waiting / 1e9


def cores(cpu: dict[str, float]) -> str:
    """``latency``'s ``cpu`` in words."""
    return f"the worker ran {cpu['running_s']:.2f} s and waited for a core {cpu['waiting_s']:.2f} s"


def stages(port: int) -> dict[str, dict[str, float]]:
    """The worker's loop steps and garbage-collector pauses so far, by stage: count, seconds, and
    the cumulative count at each bucket bound (``velox_worker_stage_seconds``)."""
    found: dict[str, dict[str, float]] = {}
    for sample in scrape(port).get("velox_worker_stage_seconds", []):
        stage = found.setdefault(sample.labels["stage"], {})
        if sample.name.endswith("_bucket"):
            stage[sample.labels["le"]] = sample.value
        else:
            stage[sample.name.rsplit("_", 1)[1]] = sample.value
    return found


def where(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per stage between two scrapes: steps, seconds, steps over 20 ms, and the longest (its bucket's
    bound, ms): a late event waited through such a step (a fetch wait is the loop idle, not late)."""
    found = {}
    for stage, now in after.items():
        then = before.get(stage, {})
        grew = {le: now[le] - then.get(le, 0.0) for le in now if le not in ("count", "sum", "created")}
        steps = now.get("count", 0.0) - then.get("count", 0.0)
        bounds = sorted((float(le), count) for le, count in grew.items())
        longest = next((bound for bound, count in bounds if count >= steps), float("inf"))
        found[stage] = {"steps": int(steps), "seconds": round(now.get("sum", 0.0) - then.get("sum", 0.0), 3),
                        "over_20_ms": int(steps - grew.get("0.02", 0.0)), "longest_ms": 1000 * longest}
    return found


def recovery(settings: Settings) -> dict[str, float]:
    """A second worker on an empty data directory: how long until its partitions are rebuilt from the changelog."""
    empty = settings.replace(data=settings.data / "empty", worker_id="worker-recovering", worker_metrics_port=0)
    log_file = empty.data / "worker.log"
    worker = processes.spawn(empty, log_file, "worker")
    try:
        ready = re.compile(r"ready: .* (\d+) changelog records recovered in ([\d.]+) s")
        while not (found := ready.search(log_file.read_text() if log_file.exists() else "")):
            if worker.poll() is not None:
                raise SystemExit(f"recovering worker exited; see {log_file}")
            time.sleep(0.2)
        return {"records": int(found.group(1)), "seconds": float(found.group(2))}
    finally:
        processes.stop(worker)


def faust_recovery(settings: Settings) -> dict[str, float]:
    """The Faust worker again on an empty data directory: seconds from its start to every partition ready.

    The same member id: a new one would first wait out the stopped one's session (10 s)."""
    empty = settings.replace(data=settings.data / "empty", worker_metrics_port=0)
    log_file = empty.data / "worker.log"
    started = time.perf_counter()
    worker = processes.spawn(empty, log_file, "worker")
    every = "owning [" + ", ".join(str(p) for p in range(settings.partitions)) + "]"
    try:
        while every not in (log_file.read_text() if log_file.exists() else ""):
            if worker.poll() is not None:
                raise SystemExit(f"recovering worker exited; see {log_file}")
            time.sleep(0.1)
        return {"seconds": time.perf_counter() - started}
    finally:
        processes.stop(worker)


def faust_noop(settings: Settings, topic: str, events: int) -> float:
    """Events per second of a do-nothing Faust agent over ``topic`` (bench/faust_noop.py)."""
    log_file = settings.data / "faust-noop.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "wb") as log:
        noop = subprocess.Popen(
            [sys.executable, str(Path(__file__).parent / "faust_noop.py"), settings.bootstrap, topic,
             f"bench-faust-noop-{uuid.uuid4().hex[:6]}", str(settings.data / "faust-noop"), str(events)],
            stdout=subprocess.PIPE, stderr=log)
    try:
        assert noop.stdout is not None
        for line in noop.stdout:  # Faust's banner first
            if line.startswith(b"{"):
                return float(json.loads(line)["events_per_s"])
        raise SystemExit(f"the do-nothing Faust agent exited; see {log_file}")
    finally:
        processes.stop(noop)


def quix(settings: Settings, topic: str, events: int, guarantee: str) -> float:
    """Events per second of bench/quix_worker.py (Quix Streams, the same update) on the same topic."""
    venv = settings.cache / "bench-quix-venv"
    if not (venv / "bin" / "python").exists():
        progress(f"  making {venv} for Quix Streams (once)")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "quixstreams==3.28.1", "numpy"], check=True)
    version = settings.data / "initial-version.npz"
    version.write_bytes(initial_version(settings).to_npz())
    rule = make_rule("sgd", settings.learning_rate, settings.l2, settings.evidence)
    out = subprocess.run(
        [str(venv / "bin" / "python"), str(Path(__file__).parent / "quix_worker.py"), settings.bootstrap, topic,
         f"bench-quix-{guarantee}-{uuid.uuid4().hex[:6]}", str(settings.data / f"quix-{guarantee}"), str(version),
         str(events), guarantee, *(str(value) for value in (rule.learning_rate, rule.l2, rule.evidence))],
        check=True, capture_output=True, text=True,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["events_per_s"])


def faust_engine(settings: Settings, args: argparse.Namespace, kafka_rate: float) -> dict[str, object]:
    """The Faust engine on the same events (a topic of its own: the group is named after the topics),
    against a do-nothing Faust agent on that topic."""
    own = settings.replace(namespace=f"bench{uuid.uuid4().hex[:6]}-", engine="faust", standby_replicas=0,
                           data=settings.data.with_name(settings.data.name + "-faust"))
    topics.ensure(own)
    topic = own.topic("observations")
    progress(f"{own.rule}: producing the events again for the Faust engine")
    produce(own, topic, args.events, args.users, args.items)
    progress(f"{own.rule}: do-nothing Faust agent (Faust's ceiling)")
    ceiling = faust_noop(own, topic, args.events)
    progress(f"  do-nothing Faust agent: {ceiling:,.0f} events/s")
    progress(f"{own.rule}: velox worker --engine faust")
    worker = run_worker(own, topic, args.events, args.latency_rate, args.latency_seconds, args.users, args.items)
    rate = worker.pop("rate")
    progress(f"{own.rule}: Faust engine recovery of an empty data directory")
    return {"worker_events_per_s": round(rate), "faust_noop_events_per_s": round(ceiling),
            "ratio_to_noop": round(rate / ceiling, 3), "ratio_to_kafka_engine": round(rate / kafka_rate, 3),
            **rounded(worker), "recovery": faust_recovery(own)}


def uuid_ids(settings: Settings, args: argparse.Namespace, integer_rate: float) -> dict[str, float]:
    """The same worker and load with every user and item a 36-character UUID: its rate against the
    integer ids' in this run, and its record bytes per event (the key is the UUID; a seen item is
    its 8-byte code either way)."""
    progress(f"{settings.rule}: velox worker on {args.events:,} events with UUID ids")
    worker = applied_load(settings.replace(namespace=f"bench{uuid.uuid4().hex[:6]}-", data=settings.data / "uuid-ids"),
                          args, uuid_id)
    rate = worker.pop("rate")
    return {"worker_events_per_s": round(rate), "ratio_to_integer_ids": round(rate / integer_rate, 3),
            **rounded(worker)}


def rule_settings(base: Settings, args: argparse.Namespace, rule: str, data: Path) -> Settings:
    """A system of its own (a new namespace) for ``rule`` at the run's size."""
    return base.replace(namespace=f"bench{uuid.uuid4().hex[:6]}-", partitions=args.partitions, d=args.d,
                        items=args.items, rule=rule, data=data, feedback="implicit" if rule == "implicit" else "explicit")


def applied_load(settings: Settings, args: argparse.Namespace, named: Callable[[int], int | str] = int) -> dict[str, float]:
    """The run's load (each id as ``named`` gives it; UUIDs: the items named so in the initial
    version too) produced to a new system, then ``applying``'s figures of a worker on it."""
    if named is not int:
        settings = settings.replace(initial_version=uuid_version(settings, settings.data))
    topics.ensure(settings)
    produce(settings, settings.topic("observations"), args.events, args.users, args.items, named=named)
    with worker_process(settings) as (worker, port):
        return applying(worker, port, args.events, settings.data / "worker.log")


def worker_rate(base: Settings, args: argparse.Namespace, rule: str, named: Callable[[int], int | str] = int) -> float:
    """One more measurement of the worker's rate over the run's load, on a system of its own."""
    return applied_load(rule_settings(base, args, rule, base.data / f"{rule}-round-{uuid.uuid4().hex[:6]}"),
                        args, named)["rate"]


def more_rounds(base: Settings, args: argparse.Namespace, rules: dict[str, dict[str, Any]]) -> None:
    """``--rounds``: each worker rate measured again, the rules (and the UUID ids) in turn, round after
    round, so that their ratios compare runs taken side by side (a single run's rate moved by a third
    between runs on this machine); each rate is then the median of its rounds, all of them kept."""
    first = args.rules.split(",")[0]
    for figures in rules.values():
        figures["worker_rounds"] = [figures["worker_events_per_s"]]
    named = rules[first]["uuid_ids"]
    named["worker_rounds"] = [named["worker_events_per_s"]]
    for round_ in range(2, args.rounds + 1):
        for rule, figures in rules.items():
            progress(f"round {round_} of {args.rounds}: {rule} worker")
            figures["worker_rounds"].append(round(worker_rate(base, args, rule)))
        progress(f"round {round_} of {args.rounds}: {first} worker, UUID ids")
        named["worker_rounds"].append(round(worker_rate(base, args, first, uuid_id)))
    for figures in rules.values():
        figures["worker_events_per_s"] = round(float(np.median(figures["worker_rounds"])))
        figures["ratio"] = round(figures["worker_events_per_s"] / figures["minimal_loop_events_per_s"], 3)
    named["worker_events_per_s"] = round(float(np.median(named["worker_rounds"])))
    named["ratio_to_integer_ids"] = round(named["worker_events_per_s"] / rules[first]["worker_events_per_s"], 3)


def freshness(args: argparse.Namespace) -> dict[str, Any]:
    """``--latency-runs``: the first rule's produce-to-visible latency, each run on a broker of its
    own, after the worker applied ``--events`` (the full run's latency follows its throughput run)."""
    runs: list[dict[str, Any]] = []
    checks: list[dict[str, object]] = []
    rule = args.rules.split(",")[0]
    for run in range(args.latency_runs):
        figures: dict[str, Any] = {"load_average": round(os.getloadavg()[0], 2)}
        for engine in args.engines.split(","):
            with broker_settings("freshness") as base:
                settings = base.replace(namespace=f"bench{uuid.uuid4().hex[:6]}-", partitions=args.partitions,
                                        d=args.d, items=args.items, rule=rule, engine=engine, standby_replicas=0,
                                        data=base.data / engine, feedback="implicit" if rule == "implicit" else "explicit")
                topics.ensure(settings)
                topic = settings.topic("observations")
                progress(f"run {run + 1}, {engine} engine: {args.events:,} events to warm up, then "
                         f"{args.latency_rate:,.0f} events/s for {args.latency_seconds:.0f} s")
                produce(settings, topic, args.events, args.users, args.items)
                worker = rounded(run_worker(settings, topic, args.events, args.latency_rate, args.latency_seconds,
                                            args.users, args.items))
                figures[engine] = {"p50_ms": worker["p50_ms"], "p99_ms": worker["p99_ms"], "where": worker["where"],
                                   "cpu": worker["cpu"]}
                progress(f"  p50 {worker['p50_ms']:.1f} ms, p99 {worker['p99_ms']:.1f} ms")
        if "kafka" in figures:
            checks.append({"what": f"produce-to-visible p99 at {args.latency_rate:,.0f} events/s, kafka engine, "
                                   f"run {run + 1} of {args.latency_runs} (a new broker each)",
                           "figure": figures["kafka"]["p99_ms"], "target": "<= 50 ms",
                           "met": figures["kafka"]["p99_ms"] <= 50})
        runs.append(figures)
    return {"events": args.events, "users": args.users, "items": args.items, "d": args.d, "rule": rule,
            "partitions": args.partitions, "latency_rate": args.latency_rate,
            "latency_seconds": args.latency_seconds, "runs": runs, "checks": checks}


def print_freshness(result: dict[str, Any]) -> None:
    for number, run in enumerate(result["runs"], 1):
        for engine, figures in run.items():
            if engine == "load_average":
                continue
            print(f"run {number} (load {run['load_average']}), {engine} engine: p50 {figures['p50_ms']:.1f} ms, "
                  f"p99 {figures['p99_ms']:.1f} ms; the loop: " + "; ".join(
                      f"{stage} {w['seconds']:.2f} s in {w['steps']:,} steps, {w['over_20_ms']:,} over 20 ms, "
                      f"longest ≤ {w['longest_ms']:.0f} ms" for stage, w in figures["where"].items())
                  + f"; {cores(figures['cpu'])}")
    print_checks(result["checks"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--d", type=int, default=50)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--rules", default="sgd,rls")
    parser.add_argument("--latency-rate", type=float, default=5_000)
    parser.add_argument("--latency-seconds", type=float, default=10)
    parser.add_argument("--no-quix", action="store_true", help="skip Quix Streams (it needs a virtualenv of its own)")
    parser.add_argument("--engines", default="kafka,faust", help="kafka: the Faust engine is skipped")
    parser.add_argument("--latency-runs", type=int, default=0,
                        help="only the latency, this many runs in a row, each on a new broker")
    parser.add_argument("--rounds", type=int, default=3,
                        help="worker rates measured this many times, the rules in turn: each rate is the median")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.latency_runs:
        result = freshness(args)
        print_freshness(result)
        write_json(args.json, result)
        return
    rules: dict[str, dict[str, float]] = {}
    checks: list[dict[str, object]] = []
    with broker_settings("stream") as base:
        for rule in args.rules.split(","):
            settings = rule_settings(base, args, rule, base.data / rule)
            topics.ensure(settings)
            topic = settings.topic("observations")
            progress(f"{rule}: producing {args.events:,} events for {args.users:,} users, {args.items:,} items, d={args.d}")
            produce(settings, topic, args.events, args.users, args.items)
            progress(f"{rule}: minimal loop (ceiling)")
            ceiling = minimal_loop(settings, topic, args.events, settings.data)
            progress(f"  minimal loop: {ceiling:,.0f} events/s")
            progress(f"{rule}: velox worker")
            first = rule == args.rules.split(",")[0]
            worker = run_worker(settings, topic, args.events, args.latency_rate,
                                args.latency_seconds if first else 0, args.users, args.items)
            figures = {"worker_events_per_s": round(worker.pop("rate")), "minimal_loop_events_per_s": round(ceiling)}
            figures["ratio"] = round(figures["worker_events_per_s"] / ceiling, 3)
            figures |= rounded(worker)
            progress(f"{rule}: recovery of an empty data directory")
            figures["recovery"] = recovery(settings)
            if rule == "sgd" and not args.no_quix:
                for guarantee in ("exactly-once", "at-least-once"):
                    progress(f"sgd: Quix Streams, {guarantee}")
                    figures[f"quix_{guarantee.replace('-', '_')}_events_per_s"] = round(
                        quix(settings, topic, args.events, guarantee))
            if first and "faust" in args.engines.split(","):
                figures["faust"] = faust_engine(settings, args, figures["worker_events_per_s"])
            if first:
                figures["uuid_ids"] = uuid_ids(settings, args, figures["worker_events_per_s"])
            rules[rule] = figures
        if args.rounds > 1:
            more_rounds(base, args, rules)
        first_rule = args.rules.split(",")[0]
        named = rules[first_rule]["uuid_ids"]
        checks.append({"what": f"worker throughput with 36-character UUID ids against integer ids ({first_rule})",
                       "figure": named["ratio_to_integer_ids"], "target": ">= 0.85",
                       "met": named["ratio_to_integer_ids"] >= 0.85})
        if "implicit" in rules and "sgd" in rules:
            ratio = rules["implicit"]["worker_events_per_s"] / rules["sgd"]["worker_events_per_s"]
            checks.append({"what": "implicit rule's worker throughput against sgd's (same run)",
                           "figure": round(ratio, 3), "target": ">= 0.5", "met": ratio >= 0.5})
        if "implicit" in rules:
            # An interaction changes w (f32[d]), count and offset, one seen item, b (f64[d]), one item
            # and its confidence (as bench/report.py counts it).
            changes = 12 * args.d + 40
            written = rules["implicit"]["table_bytes_per_event"] / changes
            checks.append({"what": f"implicit rule's record bytes per event over what the event changes ({changes} B)",
                           "figure": round(written, 2), "target": "<= 2", "met": written <= 2})
    result = {"events": args.events, "users": args.users, "items": args.items, "d": args.d,
              "partitions": args.partitions, "latency_rate": args.latency_rate, "rules": rules, "checks": checks}
    for rule, figures in rules.items():
        print(f"{rule}: worker {figures['worker_events_per_s']:>7,} events/s, minimal loop "
              f"{figures['minimal_loop_events_per_s']:>7,} (ratio {figures['ratio']:.2f}); record bytes per event: "
              f"table {figures['table_bytes_per_event']:,.0f}, changelog {figures['changelog_bytes_per_event']:,.0f}; "
              f"RSS {figures['rss_start_mb']:.0f} -> {figures['rss_half_mb']:.0f} (half) -> {figures['rss_end_mb']:.0f} MB; recovery of "
              f"{figures['recovery']['records']:,} records {figures['recovery']['seconds']:.1f} s")
        if "p99_ms" in figures:
            print(f"{rule}: produce-to-state-visible at {args.latency_rate:,.0f} events/s: "
                  f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms")
            print(f"{rule}: meanwhile, the worker's loop: " + "; ".join(
                f"{stage} {w['seconds']:.2f} s in {w['steps']:,} steps, {w['over_20_ms']:,} over 20 ms, longest "
                f"≤ {w['longest_ms']:.0f} ms" for stage, w in figures["where"].items())
                + f"; {cores(figures['cpu'])}")
        if (named := figures.get("uuid_ids")) is not None:
            print(f"{rule}: worker with UUID ids {named['worker_events_per_s']:>7,} events/s, "
                  f"{named['ratio_to_integer_ids']:.2f} of integer ids; record bytes per event: table "
                  f"{named['table_bytes_per_event']:,.0f}, changelog {named['changelog_bytes_per_event']:,.0f}")
        if (faust := figures.get("faust")) is not None:
            print(f"{rule}: Faust engine {faust['worker_events_per_s']:>7,} events/s, do-nothing Faust agent "
                  f"{faust['faust_noop_events_per_s']:,} (ratio {faust['ratio_to_noop']:.2f}), kafka engine "
                  f"{figures['worker_events_per_s']:,} (Faust / kafka {faust['ratio_to_kafka_engine']:.2f}); RSS "
                  f"{faust['rss_start_mb']:.0f} -> {faust['rss_end_mb']:.0f} MB; empty directory to ready "
                  f"{faust['recovery']['seconds']:.1f} s")
            if "p99_ms" in faust:
                print(f"{rule}: Faust engine produce-to-state-visible at {args.latency_rate:,.0f} events/s: "
                      f"p50 {faust['p50_ms']:.1f} ms, p99 {faust['p99_ms']:.1f} ms")
        for guarantee in ("exactly_once", "at_least_once"):
            if (quix_rate := figures.get(f"quix_{guarantee}_events_per_s")) is not None:
                print(f"{rule}: Quix Streams {guarantee.replace('_', '-')} {quix_rate:,} events/s "
                      f"(worker / Quix {figures['worker_events_per_s'] / quix_rate:.2f})")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
