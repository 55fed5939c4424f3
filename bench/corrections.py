"""The edge's item corrections reader: can every edge keep up with the log a worker applies?

Each edge reads every partition of ``observations`` from the active version's training end
(``velox.serving.live_corrections``): each event decoded, checked for its home partition, and its
residual against the version added to its item's sums. The figure: events per second of that
reader catching up with ``--events`` events (from 100,000 user ids over 10,000 items, 8 partitions,
d = 51; the version is a random one with no trained users, so no user's row is read),
against a bare consumer reading the same messages in the same run (the ceiling: what librdkafka
delivers to Python), and against the kafka engine's events per second in bench/stream.py's last
run (the rate a worker applies them). Target: at least that rate, so an edge never falls behind a
worker at full speed.

    python bench/corrections.py [--events 500000] [--json bench/results/corrections.json]

Uses the broker at VELOX_BOOTSTRAP if set, else starts one of its own and stops it after.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path

from confluent_kafka import TopicPartition
from stream import broker_settings, produce, progress  # bench/stream.py

from velox.control import topics
from velox.kafka import clients
from velox.model.version import random_version
from velox.serving.live_corrections import Corrections
from velox.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results"
USERS, ITEMS = 100_000, 10_000


def bare(settings: Settings, events: int) -> float:
    """Events per second of a consumer that only takes the messages, from the first to the last."""
    topic = settings.topic("observations")
    reader = clients.consumer(settings, group=f"bench-bare-{uuid.uuid4().hex[:6]}")
    reader.assign([TopicPartition(topic, p, 0) for p in range(settings.partitions)])
    done, started = 0, None
    try:
        while done < events:
            messages = clients.arrived(reader, 10_000, 1.0)
            started = started or time.perf_counter()
            done += sum(1 for m in messages if m.error() is None)
        return events / (time.perf_counter() - started)
    finally:
        reader.close()


def reader(settings: Settings, events: int) -> float:
    """Events per second of the corrections' catch-up over the whole topic."""
    version = random_version(ITEMS, 51, seed=1)
    started = time.perf_counter()
    corrections = Corrections(settings, version, {})
    elapsed = time.perf_counter() - started
    corrections.close()
    if corrections.seen.events != events:
        raise SystemExit(f"the reader took {corrections.seen.events:,} events, not {events:,}")
    return events / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--json", type=Path, default=RESULTS / "corrections.json")
    args = parser.parse_args()
    stream = RESULTS / "stream.json"
    engine = json.loads(stream.read_text())["rules"]["sgd"]["worker_events_per_s"] if stream.exists() else None
    with broker_settings("corrections") as base:
        settings = base.replace(namespace=f"corrections-{uuid.uuid4().hex[:6]}-", partitions=8)
        topics.ensure(settings)
        progress(f"producing {args.events:,} events")
        produce(settings, settings.topic("observations"), args.events, USERS, ITEMS)
        ceiling = max(bare(settings, args.events) for _ in range(2))
        rates = [reader(settings, args.events) for _ in range(3)]
    rate = max(rates)
    result = {"events": args.events, "partitions": 8, "reader_events_per_s": rate, "reader_runs": rates,
              "bare_events_per_s": ceiling, "ratio_to_bare": rate / ceiling, "kafka_engine_events_per_s": engine,
              "keeps_up": engine is None or rate >= engine}
    print(f"corrections reader: {rate:,.0f} events/s (runs {', '.join(f'{r:,.0f}' for r in rates)}); "
          f"bare consumer {ceiling:,.0f} events/s, ratio {rate / ceiling:.2f}")
    if engine is not None:
        print(f"kafka engine (bench/stream.py's last run): {engine:,.0f} events/s; the reader "
              f"{'keeps up' if rate >= engine else 'does NOT keep up'} ({rate / engine:.2f}x)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
