"""The worker's user states, read from this machine's disk: RocksDB secondary instances.

The edge runs beside the worker, in its own process: its own GIL and core, so a busy worker
does not delay answers nor a burst of requests the worker's updates. The price is the catching
up below, which bench/serve.py measures (predicts while the worker writes, against predicts
alone); inside the worker's process, the requests would share its GIL with the events, and each
of its batches would hold answers back. Each partition DB the worker holds is opened as a
secondary: a read-only view that catches up with the worker's writes (WAL included) on demand.
A read catches its partition up at most every ``freshness`` seconds (default 50 ms: a much
tighter bound spent most of a core on catching up under bench/serve.py's writes), and only if
the primary wrote something since: the DB folder's mtime and its newest WAL's size
(two ``stat`` calls) say so.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from rocksdict import AccessType, Options, Rdict

from velox.state.layout import table_path


class LocalState:
    """``slot``: which of the edge's processes reads (each has its own secondary instances)."""

    def __init__(self, data: Path, partitions: int, freshness: float = 0.05, slot: int = 0) -> None:
        self.data, self.slot = data, slot
        self.partitions = partitions
        self.freshness = freshness
        self.dbs: dict[int, Rdict] = {}
        self.caught_up: dict[int, float] = {}
        self.written: dict[int, tuple[int, str, int]] = {}  # folder mtime, newest WAL, its size
        for partition in range(partitions):  # now, not in the first requests (an open replays the WAL)
            self._db(partition)

    def get(self, partition: int, key: bytes) -> bytes | None:
        """The record of the user with this key, if this machine holds their partition and them."""
        db = self._db(partition)
        if db is None:
            return None
        now = time.monotonic()
        if now - self.caught_up.get(partition, 0.0) > self.freshness:
            if self._written_since(partition):
                db.try_catch_up_with_primary()
            self.caught_up[partition] = now
        return db.get(key)

    def _written_since(self, partition: int) -> bool:
        """Whether the primary wrote since the last look (always true the first time)."""
        folder = table_path(self.data, partition)
        mtime = os.stat(folder).st_mtime_ns
        before = self.written.get(partition)
        wal = before[1] if before is not None and before[0] == mtime else max(
            (entry.name for entry in os.scandir(folder) if entry.name.endswith(".log")), default="")
        try:
            size = os.stat(folder / wal).st_size if wal else 0
        except FileNotFoundError:  # the WAL was just retired: the folder changed
            wal, size = "", -1
        self.written[partition] = (mtime, wal, size)
        return before != self.written[partition]

    def _db(self, partition: int) -> Rdict | None:
        """The partition's DB, opened once it is complete: RocksDB writes ``CURRENT`` last (by a
        rename), so a DB a worker is creating at this moment is not opened half made."""
        db = self.dbs.get(partition)
        if db is None and (table_path(self.data, partition) / "CURRENT").exists():
            options = Options(raw_mode=True)
            options.set_max_open_files(-1)  # what RocksDB asks of secondaries
            secondary = self.data / "edge" / f"process-{self.slot}" / f"secondary-{partition}"
            secondary.mkdir(parents=True, exist_ok=True)
            db = self.dbs[partition] = Rdict(
                str(table_path(self.data, partition)), options, access_type=AccessType.secondary(str(secondary))
            )
        return db

    def close(self) -> None:
        for db in self.dbs.values():
            db.close()
        self.dbs.clear()
