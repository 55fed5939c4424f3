"""Restart: a worker killed with -9 under load and started again; how long until its group's commits reach the topic's end.

For each engine (``kafka``, then ``faust``), on a topic of ``--history`` observations the worker
has applied and committed:

1. ``--restarts`` times: produce ``--load`` events at ``--rate`` per second in a thread; a second
   in, kill -9 the worker and start it again at once.
2. The figure: from the restart to the moment the group has committed every partition to its end
   (polled every 50 ms). It holds the new worker's start, its catching up with what arrived while
   it was down, and its first commits; the events are applied before their offsets are committed,
   so until then a crash re-reads them (applying none twice: the offsets in the records).

The kafka engine commits in the transaction of each batch's records; Faust commits on its own
timer (every second here), from its bookkeeping of acked offsets, which a restart used to
upset for a minute or two (velox.streams.faust_engine.ReadCommittedConsumer says why).

    python bench/restart.py [--history 100000 --restarts 5] [--json bench/results/restart.json]

Uses the broker at VELOX_BOOTSTRAP if set, else starts one of its own and stops it after.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from pathlib import Path

from stream import broker_settings, produce, progress, write_json  # bench/stream.py

from velox import processes
from velox.control import topics
from velox.kafka import positions
from velox.settings import Settings

POLL = 0.05
TIMEOUT = 600.0


def committed_at_end(settings: Settings) -> None:
    deadline = time.monotonic() + TIMEOUT
    while positions.lag(settings, settings.app_id, settings.topic("observations")) > 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"the {settings.engine} worker's group did not commit the topic's end in {TIMEOUT:.0f} s")
        time.sleep(POLL)


def run(base: Settings, engine: str, history: int, restarts: int, load: int, rate: float, users: int) -> list[float]:
    """Seconds from each restart to the group's commits at the topic's end."""
    settings = base.replace(namespace=f"restart-{engine}-{uuid.uuid4().hex[:6]}-", engine=engine,
                            data=base.data / engine, worker_metrics_port=0)
    topics.ensure(settings)
    source = settings.topic("observations")
    log = settings.data / "worker.log"
    worker = processes.spawn(settings, log, "worker")
    try:
        produce(settings, source, history, users, settings.items)
        committed_at_end(settings)
        progress(f"{engine}: {history:,} events applied and committed")
        seconds = []
        for _ in range(restarts):
            sending = threading.Thread(target=produce, args=(settings, source, load, users, settings.items, rate))
            sending.start()
            time.sleep(1.0)
            worker.kill()  # SIGKILL
            worker.wait(30)
            worker = processes.spawn(settings, log, "worker")
            restarted = time.monotonic()
            sending.join()
            committed_at_end(settings)
            seconds.append(time.monotonic() - restarted)
            progress(f"{engine}: restarted, every event committed {seconds[-1]:.1f} s later")
        return seconds
    finally:
        processes.stop(worker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=100_000)
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--load", type=int, default=6_000, help="events produced around each restart")
    parser.add_argument("--rate", type=float, default=2_000.0)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {}
    with broker_settings("restart") as base:
        base = base.replace(partitions=args.partitions)
        for engine in ("kafka", "faust"):
            results[engine] = run(base, engine, args.history, args.restarts, args.load, args.rate, args.users)
    for engine, seconds in results.items():
        print(f"{engine}: kill -9 and restart under load, to every event committed: median "
              f"{statistics.median(seconds):.1f} s, longest {max(seconds):.1f} s ({len(seconds)} restarts)")
    ratio = statistics.median(results["faust"]) / statistics.median(results["kafka"])
    print(f"faust / kafka (medians): {ratio:.2f}")
    write_json(args.json, {"history": args.history, "load": args.load, "rate": args.rate,
                           "partitions": args.partitions, "seconds": results})


if __name__ == "__main__":
    main()
