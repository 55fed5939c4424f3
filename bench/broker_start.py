"""How long `velox kafka start` takes, against the broker's own readiness in the same run.

Ceiling: the moment the broker logs "Transitioning from RECOVERY to RUNNING" (it is unfenced
and serves). Our start also formats storage, launches the JVM and waits for metadata; the
ratio shows what readiness detection adds. Cold = empty data directory, warm = restart.

    python bench/broker_start.py [--runs 3] [--json results.json]
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from stream import write_json  # bench/stream.py

from velox.local.broker import LocalBroker, free_bootstrap
from velox.settings import Settings

RUNNING = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\].*Transitioning from RECOVERY to RUNNING")


def running_at(log: Path, after: float) -> float:
    """Wall-clock time of the last RUNNING line logged after ``after``."""
    stamps = [
        datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for match in map(RUNNING.match, log.read_text().splitlines()) if match
    ]
    return max(stamp for stamp in stamps if stamp >= after - 1)


def timed_start(broker: LocalBroker) -> tuple[float, float]:
    wall = time.time()
    started = time.monotonic()
    broker.start()
    ours = time.monotonic() - started
    return ours, running_at(broker.log, wall) - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"cold": [], "warm": []}
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as data:
            settings = Settings.from_env(data=Path(data), bootstrap=free_bootstrap())
            broker = LocalBroker(settings)
            try:
                results["cold"].append(timed_start(broker))
                broker.stop()
                results["warm"].append(timed_start(broker))
            finally:
                broker.stop()
    summary = {}
    for kind, pairs in results.items():
        ours = statistics.median(p[0] for p in pairs)
        ceiling = statistics.median(p[1] for p in pairs)
        summary[kind] = {"start_s": round(ours, 2), "broker_running_s": round(ceiling, 2),
                         "ratio": round(ours / ceiling, 2), "runs": len(pairs)}
        print(f"{kind:5} start {ours:5.2f} s   broker RUNNING at {ceiling:5.2f} s   ratio {ours / ceiling:.2f}"
              f"   (median of {len(pairs)})")
    write_json(args.json, summary)


if __name__ == "__main__":
    main()
