"""``velox load``: produce feedback to ``observations``, with progress: a MovieLens file, any CSV of
feedback with a header (``read_csv``), or a synthetic stream (``velox.model.synthetic``).

MovieLens formats, recognised by their separator: ``u.data`` (tab), ``ratings.dat`` and the sample inside
pyspark (``::``), ``ratings.csv`` (comma, with a header). All are user, item, rating, timestamp; the ids
may be any ids (``velox.schemas.ids``), not only MovieLens's integers.
"""

from __future__ import annotations

import csv
import sys
import time
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import TextIO

import pyspark

from velox.errors import VeloxError
from velox.kafka import clients, positions
from velox.schemas import ids, observation
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
    if as_number((first.split(separator)[2:3] or [""])[0]) is None:
        lines = lines[1:]  # ratings.csv starts with a header (its third column is not a rating)
    return [_rating(path, number, line, separator) for number, line in lines]


def as_interactions(ratings: Iterable[Observation], liked: float = 4.0) -> list[Observation]:
    """Ratings as implicit feedback: every rating a view, one of at least ``liked`` a click too (its
    own event, at the same time): MovieLens for an implicit system.

    >>> [e.kind for e in as_interactions([Observation(user=1, item=2, score=5.0, time=0.0)])]
    ['view', 'click']
    """
    found = []
    for r in ratings:
        found.append(Observation(user=r.user, item=r.item, time=r.time, kind="view"))
        if r.score is not None and r.score >= liked:
            found.append(Observation(user=r.user, item=r.item, time=r.time, kind="click"))
    return found


def as_number(text: str) -> float | None:
    """``text`` as a number, None if it is not one."""
    try:
        return float(text)
    except ValueError:
        return None


def _rating(path: Path, number: int, line: str, separator: str) -> Observation:
    try:
        user, item, score, timestamp = line.strip().split(separator)[:4]
        return Observation(user=ids.given(user), item=ids.given(item), score=float(score), time=float(timestamp))
    except ValueError as exc:
        raise VeloxError(f"{path}, line {number}: expected user, item, rating and timestamp separated by "
                         f"{separator!r}, got {line.strip()[:80]!r} ({exc})") from None


def read_csv(path: Path, user: str, item: str, score: str | float | None, at: str | None = None,
             kind: str | None = None, kinds: Collection[str] = ()) -> list[Observation]:
    """The feedback of a CSV file with a header, in file order: ``user``, ``item`` and ``score`` name
    its columns (``score`` a number: every row's score, for a file of clicks without one), ``at`` the
    column of each event's time (seconds since the epoch; none: the time of loading), ``kind`` the
    column of each interaction's kind, or one of ``kinds`` (the system's) that every row is. A bad
    row is refused naming its line and column."""
    if not path.is_file():
        raise VeloxError(f"no CSV file at {path}")
    now = time.time()
    with path.open(newline="", encoding="utf-8") as file:
        rows = csv.reader(file)
        header = next(rows, None)
        if header is None:
            raise VeloxError(f"{path} is empty: a CSV of feedback starts with a header")
        every = kind if kind is not None and kind not in header and kind in kinds else None  # every row's kind
        named = [user, item, *([score] if isinstance(score, str) else []), *([at] if at else []),
                 *([kind] if kind is not None and every is None else [])]
        if missing := [name for name in named if name not in header]:
            also = f", and not a kind this system knows ({', '.join(kinds)})" if missing[0] == kind else ""
            raise VeloxError(f"{path}: no column {missing[0]!r} in the header ({', '.join(header)}){also}")
        column = {name: header.index(name) for name in named}
        return [_row(path, rows.line_num, cells, column, (user, item, score, at, kind, every), kinds, now)
                for cells in rows if cells]


def _row(path: Path, line: int, cells: list[str], column: dict[str, int],
         names: tuple[str, str, str | float | None, str | None, str | None, str | None], kinds: Collection[str],
         now: float) -> Observation:
    user, item, score, at, kind, every = names

    def cell(name: str) -> str:
        if column[name] >= len(cells):
            raise VeloxError(f"{path}, line {line}: no {name!r} column (the row has {len(cells)} cells)")
        return cells[column[name]]

    def number(name: str) -> float:
        try:
            return float(cell(name))
        except ValueError:
            raise VeloxError(f"{path}, line {line}, column {name!r}: {cell(name)!r} is not a number") from None

    rating = number(score) if isinstance(score, str) else score
    said = every if every is not None or kind is None else cell(kind)
    if said is not None and kinds and said not in kinds:
        raise VeloxError(f"{path}, line {line}, column {kind!r}: unknown kind {said!r} (this system knows "
                         f"{', '.join(kinds)})")
    try:
        return Observation(user=ids.given(cell(user)), item=ids.given(cell(item)), score=rating, kind=said,
                           time=number(at) if at else now)
    except ValueError as exc:  # the event's rule, said of the field: said of its column here
        field, _, why = str(exc).partition(": ")
        name = {"user": user, "item": item, "score": score, "kind": kind}.get(field)
        where = f", column {name!r}" if isinstance(name, str) else ""
        raise VeloxError(f"{path}, line {line}{where}: {why if where else exc}") from None


def produce(settings: Settings, events: Iterable[Observation], total: int, out: TextIO = sys.stderr) -> None:
    """Send the events to ``observations`` (acks=all, idempotent), showing progress and rate."""
    topic = settings.topic("observations")
    producer = clients.producer(settings)
    started = last = time.monotonic()
    with clients.acknowledged(producer, "observations") as on_delivery:
        for count, event in enumerate(events, 1):
            clients.send(producer, topic, key=event.key, value=observation.encode(event), on_delivery=on_delivery)
            if time.monotonic() - last > 0.5 or count == total:
                last = time.monotonic()
                producer.poll(0)
                rate = count / max(last - started, 1e-9)
                bar = "#" * int(30 * count / max(total, 1))
                print(f"\rloading {bar:<30} {count:,}/{total:,} ({rate:,.0f}/s)", end="", file=out, flush=True)
        print(file=out)


def held_observations(settings: Settings) -> int:
    """How many messages the observations topic holds (0: a new system)."""
    return sum(positions.end_offsets(settings, settings.topic("observations")).values())
