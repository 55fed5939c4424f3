"""The item corrections computed once per cluster: what the worker pays per event, what an edge reads to start.

The workers count the corrections' totals (``velox.streams.item_tallies``) and every edge follows
them on ``item-corrections`` (``velox.control.item_corrections``) instead of reading the log.
Figures, in one run:

- the count's cost per event in-process (``Tally.count``, batches of 2,000 events, the kafka
  engine's batch), on a version of 10,000 items with 1,000 users and with ``--users`` users: its
  cost must not grow with the users (target: at most 1.2x);
- ``--events`` events (100,000 user ids over 10,000 items, 8 partitions) applied by a real worker
  (``velox worker``), then an edge's corrections started on the log: seconds until ready (target:
  10 s, whatever the log's length) and messages of ``item-corrections`` read, against the events
  (target: fewer than a hundredth: the edge reads the totals, not the events), and the served
  corrections equal to the formula over the log (every item's count).

    python bench/corrections.py [--events 500000] [--users 1000000] [--json bench/results/corrections.json]

Uses the broker at VELOX_BOOTSTRAP if set, else starts one of its own and stops it after.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from stream import broker_settings, produce, progress, write_json  # bench/stream.py

from velox import processes
from velox.control import topics
from velox.control.versions import initial_version
from velox.kafka import clients, positions
from velox.model.corrections import ItemCorrections
from velox.model.learner import Event
from velox.model.synthetic import planted
from velox.model.version import ModelVersion
from velox.schemas import observation
from velox.serving.live_corrections import Corrections
from velox.settings import Settings
from velox.streams.item_tallies import Tally

RESULTS = Path(__file__).resolve().parent / "results"
USERS, ITEMS, BATCH = 100_000, 10_000, 2_000


def count_cost(version: ModelVersion, batches: int = 50) -> float:
    """Microseconds per event of ``Tally.count`` on batches of known and unknown users."""
    rng = np.random.default_rng(3)
    tally = Tally(version, 0, 0)
    known = version.user_ids[rng.integers(0, len(version.user_ids), BATCH * batches)]
    users = np.where(rng.random(len(known)) < 0.8, known, 10**12 + rng.integers(0, 10**6, len(known)))
    items = rng.integers(0, ITEMS + 1_000, len(users))
    scores = rng.integers(1, 6, len(users)).astype(float)
    events = [Event(b"", u, i, s, at) for at, (u, i, s) in enumerate(zip(users.tolist(), items.tolist(), scores.tolist()))]
    tally.count(events[:BATCH], {})  # warm
    started = time.perf_counter()
    for at in range(BATCH, len(events), BATCH):
        tally.count(events[at:at + BATCH], {})
    return (time.perf_counter() - started) / (len(events) - BATCH) * 1e6


def edge_start(settings: Settings, events: int) -> dict[str, Any]:
    """A worker applies the log; then an edge's corrections start on it."""
    worker = processes.spawn(settings, settings.data / "worker.log", "worker")
    try:
        deadline = time.monotonic() + 3600
        while positions.lag(settings, settings.app_id, settings.topic("observations")) > 0:
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"worker stopped or stuck; see {settings.data / 'worker.log'}")
            time.sleep(1.0)
    finally:
        processes.stop(worker)
    started = time.perf_counter()
    corrections = Corrections(settings)
    version = initial_version(settings)
    corrections.served(version)
    ready = time.perf_counter() - started
    assert corrections.follower is not None
    messages = corrections.follower.messages
    totals = corrections.follower.totals[version.id]
    corrections.close()
    expected = ItemCorrections(version)
    for batch in read_log(settings):
        expected.add(*batch)
    exact = (totals.events == expected.events == events
             and all(totals.count_of(item) == expected.count_of(item) for item in range(ITEMS)))
    return {"ready_s": ready, "messages_read": messages, "events": events, "exact": exact}


def read_log(settings: Settings) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The log's counted events, as (users, items, scores) arrays per batch read."""
    ends = positions.end_offsets(settings, settings.topic("observations"))
    for partition, end in ends.items():
        for batch in clients.read_range(settings, settings.topic("observations"), partition, 0, end, most=50_000):
            seen = [s for m in batch if (s := observation.counted(m.key(), m.value(), partition, settings.partitions))]
            yield (np.array([s.user_code for s in seen]), np.array([s.item_code for s in seen]),
                   np.array([s.score for s in seen]))


def check(what: str, figure: float, target: str, met: bool) -> dict[str, Any]:
    return {"what": what, "figure": round(figure, 4), "target": target, "met": bool(met)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path, default=RESULTS / "corrections.json")
    args = parser.parse_args()
    progress(f"the count's cost per event at 1,000 and {args.users:,} users")
    small = min(count_cost(planted(1_000, ITEMS, 51, seed=1)) for _ in range(3))
    large = min(count_cost(planted(args.users, ITEMS, 51, seed=1)) for _ in range(3))
    with broker_settings("corrections") as base:
        settings = base.replace(namespace=f"corrections-{uuid.uuid4().hex[:6]}-", partitions=8, worker_metrics_port=0,
                                items=ITEMS, d=51)
        topics.ensure(settings)
        progress(f"producing {args.events:,} events")
        produce(settings, settings.topic("observations"), args.events, USERS, ITEMS)
        start = edge_start(settings, args.events)
    result = {
        "count_us_per_event": {"1000": small, str(args.users): large}, "edge": start,
        "checks": [
            check(f"corrections' count per event at {args.users:,} users over 1,000", large / small, "<= 1.2",
                  large <= 1.2 * small),
            check(f"edge ready on a log of {args.events:,} events (s)", start["ready_s"], "<= 10",
                  start["ready_s"] <= 10),
            check("item-corrections messages an edge reads per event of the log", start["messages_read"] / args.events,
                  "< 0.01", start["messages_read"] < args.events / 100),
            check("served totals equal the formula over the log", float(start["exact"]), "== 1", start["exact"]),
        ],
    }
    print(f"count: {small:.2f} µs/event at 1,000 users, {large:.2f} at {args.users:,} ({large / small:.2f}x); "
          f"edge ready in {start['ready_s']:.2f} s reading {start['messages_read']:,} messages for "
          f"{args.events:,} events; exact: {start['exact']}")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
