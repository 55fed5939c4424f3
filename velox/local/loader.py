"""``velox load``: produce ratings to ``observations``, with progress: a MovieLens file, read here, or a
synthetic stream (``velox.model.synthetic``).

MovieLens formats, recognised by their separator: ``u.data`` (tab), ``ratings.dat`` and the sample inside
pyspark (``::``), ``ratings.csv`` (comma, with a header). All are user, item, rating, timestamp.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

import pyspark

from velox.errors import VeloxError
from velox.kafka import clients, positions
from velox.schemas import observation
from velox.schemas.observation import Observation
from velox.settings import Settings

PYSPARK_SAMPLE = Path(pyspark.__file__).parent / "data" / "mllib" / "als" / "sample_movielens_ratings.txt"


RATINGS_FILES = ("u.data", "ratings.dat", "ratings.csv")  # MovieLens 100K, 1M and 10M, the later releases


def ratings_file(path: Path) -> Path:
    """``path``, or the ratings file inside the MovieLens folder ``path``: checked before anything
    starts, so that a wrong path is one line, not a traceback after a broker came up."""
    if path.is_dir():
        inside = [path / name for name in RATINGS_FILES if (path / name).is_file()]
        if not inside:
            raise VeloxError(f"{path} is a folder without a MovieLens ratings file ({', '.join(RATINGS_FILES)})")
        return inside[0]
    if not path.is_file():
        raise VeloxError(f"no ratings file at {path}")
    return path


def read_movielens(path: Path) -> list[Observation]:
    """Every rating in the file (or the MovieLens folder), in file order."""
    path = ratings_file(path)
    lines = [(number, line) for number, line in enumerate(path.read_text(encoding="latin-1").splitlines(), 1)
             if line.strip()]
    if not lines:
        raise VeloxError(f"{path} holds no ratings")
    first = lines[0][1]
    separator = "\t" if "\t" in first else "::" if "::" in first else ","
    if not first.split(separator)[0].strip().isdigit():
        lines = lines[1:]  # ratings.csv starts with a header
    return [_rating(path, number, line, separator) for number, line in lines]


def _rating(path: Path, number: int, line: str, separator: str) -> Observation:
    try:
        user, item, score, timestamp = line.strip().split(separator)[:4]
        return Observation(user=int(user), item=int(item), score=float(score), time=float(timestamp))
    except ValueError:
        raise VeloxError(f"{path}, line {number}: expected user, item, rating and timestamp separated by "
                         f"{separator!r}, got {line.strip()[:80]!r}") from None


def produce(settings: Settings, events: Iterable[Observation], total: int, out: TextIO = sys.stderr) -> None:
    """Send the events to ``observations`` (acks=all, idempotent), showing progress and rate."""
    topic = settings.topic("observations")
    producer = clients.producer(settings)
    failures: list[object] = []
    started = last = time.monotonic()
    for count, event in enumerate(events, 1):
        clients.send(producer, topic, key=event.key, value=observation.encode(event),
                   on_delivery=lambda err, _m: err and failures.append(err))
        if time.monotonic() - last > 0.5 or count == total:
            last = time.monotonic()
            producer.poll(0)
            rate = count / max(last - started, 1e-9)
            bar = "#" * int(30 * count / max(total, 1))
            print(f"\rloading {bar:<30} {count:,}/{total:,} ({rate:,.0f}/s)", end="", file=out, flush=True)
    print(file=out)
    if producer.flush(60) != 0 or failures:
        raise VeloxError(f"{len(failures)} observations were not acknowledged: {failures[:3]}")


def held_observations(settings: Settings) -> int:
    """How many messages the observations topic holds (0: a new system)."""
    return sum(positions.end_offsets(settings, settings.topic("observations")).values())
