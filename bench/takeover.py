"""Takeover: two Faust workers, one killed with -9; how long until its users are answered again, with and without standbys.

For ``--standbys 0`` and then ``1``, on a topic of ``--events`` observations of ``--users`` users:

1. Two Faust workers (`velox worker --engine faust`, data directories of their own) share the
   partitions, each with an edge beside it (`velox serve`); both apply every event, and with
   standbys each keeps a copy of the other's partitions.
2. kill -9 the first worker (its edge keeps running, as it would on a machine that lost only
   the worker). The first worker's partitions are "moved".
3. The takeover time: from the kill to the first prediction for a user of a moved partition that
   the surviving worker's edge serves from its own table (``"default": false``, served by the
   survivor), polled every 10 ms. Split into the group's part (the dead member's session times
   out: 10 s; the survivor's log says its partitions are revoked for the new assignment), the
   survivor's recovery of the moved partitions (to its log's "ready" line), and the edge's part.

    python bench/takeover.py [--events 500000 --users 100000] [--json bench/results/takeover.json]

Uses the broker at VELOX_BOOTSTRAP if set, else starts one of its own and stops it after.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import time
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path

from stream import broker_settings, produce, progress, write_json  # bench/stream.py

from velox import processes
from velox.control import topics
from velox.kafka import positions
from velox.local.broker import free_bootstrap
from velox.schemas import partitioning
from velox.settings import Settings


def logged_at(log_file: Path, words: str, after: float) -> float | None:
    """The wall-clock time of the first line of the worker's log after ``after`` that has ``words``."""
    for line in log_file.read_text().splitlines():
        stamp = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]", line)
        if words in line and stamp:
            at = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if at >= after:
                return at
    return None


def owned(log_file: Path) -> list[int]:
    found = re.findall(r"owning \[([\d, ]*)\]", log_file.read_text())
    return [int(p) for p in found[-1].split(", ") if p] if found else []


def predict(settings: Settings, user: int) -> dict:
    with urllib.request.urlopen(f"{settings.edge_url}/v1/models/{settings.model}/predict?user={user}&item=1", timeout=5) as response:
        return json.loads(response.read())


def run(base: Settings, standbys: int, events: int, users: int, items: int) -> dict[str, float]:
    settings = base.replace(namespace=f"bench{uuid.uuid4().hex[:6]}-", engine="faust", standby_replicas=standbys)
    topics.ensure(settings)
    source = settings.topic("observations")
    progress(f"standbys {standbys}: producing {events:,} events for {users:,} users")
    produce(settings, source, events, users, items)
    pair = []
    for name in ("a", "b"):
        own = settings.replace(data=settings.data / f"standbys-{standbys}" / name, worker_id=f"worker-{name}",
                               edge_port=int(free_bootstrap().split(":")[1]), worker_metrics_port=0)
        own.data.mkdir(parents=True, exist_ok=True)
        pair.append((own, processes.spawn(own, own.data / "worker.log", "worker"),
                     processes.spawn(own, own.data / "edge.log", "serve")))
    (first, first_worker, _), (second, _, second_edge) = pair
    try:
        progress(f"standbys {standbys}: both workers applying the events")
        while positions.lag(settings, settings.app_id, source) > 0 or not (owned(first.data / "worker.log")
                                                                        and owned(second.data / "worker.log")):
            for own, worker, edge in pair:
                if worker.poll() is not None or edge.poll() is not None:
                    raise SystemExit(f"a process of {own.worker_id} exited; see {own.data}")
            time.sleep(0.5)
        time.sleep(3)  # standbys: the last changelog records reach the copies
        moved = owned(first.data / "worker.log")
        user = next(u for u in range(users) if partitioning.home(str(u).encode(), settings.partitions) in moved)
        while predict(second, user).get("served_by") != "worker-a":  # the survivor's edge forwards to the owner
            time.sleep(0.1)
        progress(f"standbys {standbys}: kill -9 worker-a (partitions {moved}); polling user {user} at worker-b's edge")
        killed = time.time()
        first_worker.send_signal(signal.SIGKILL)
        first_worker.wait()
        while True:
            answer = predict(second, user)
            if not answer["default"] and answer["served_by"] == "worker-b":
                served = time.time()
                break
            time.sleep(0.01)
        log_file = second.data / "worker.log"
        every = "owning [" + ", ".join(str(p) for p in range(settings.partitions)) + "]"
        ready = logged_at(log_file, every, killed) or served
        revoked = logged_at(log_file, "revoked", killed) or ready  # the rebalance that follows the session's end
        result = {"takeover_s": served - killed, "until_rebalance_s": revoked - killed,
                  "recovery_s": ready - revoked, "after_ready_s": served - ready}
        progress(f"standbys {standbys}: served after {result['takeover_s']:.2f} s")
        return result
    finally:
        for _, worker, edge in pair:
            processes.stop(edge)
            processes.stop(worker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {}
    with broker_settings("takeover") as base:
        base = base.replace(partitions=args.partitions, items=args.items)
        for standbys in (0, 1):
            results[standbys] = run(base, standbys, args.events, args.users, args.items)
    for standbys, figures in results.items():
        print(f"standbys {standbys}: kill -9 to the first prediction served from a moved partition "
              f"{figures['takeover_s']:.2f} s: the group's rebalance after {figures['until_rebalance_s']:.2f} s, "
              f"then the survivor's recovery {figures['recovery_s']:.2f} s, then {figures['after_ready_s']:.2f} s "
              f"to the edge's answer")
    print(f"with a standby / without: {results[1]['takeover_s'] / results[0]['takeover_s']:.2f}")
    write_json(args.json, {"events": args.events, "users": args.users, "partitions": args.partitions,
                           "standbys": {str(k): v for k, v in results.items()}})


if __name__ == "__main__":
    main()
