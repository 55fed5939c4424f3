"""The worker's user states, read from this machine's disk: RocksDB secondary instances.

The edge runs beside the worker, in its own process (its own GIL, so a busy worker does not
delay answers). Each partition DB the worker holds is opened as a secondary: a read-only view
that catches up with the worker's writes (WAL included) on demand, about a millisecond each.
A read catches its partition up at most every ``freshness`` seconds (default 50 ms: a catch-up
costs about 0.75 ms, so with 8 partitions a 10 ms bound spent most of a core on catching up;
measured with bench/serve.py).
"""

from __future__ import annotations

import time
from pathlib import Path

from rocksdict import AccessType, Options, Rdict

from velox import kafka
from velox.schemas.user_state import table_path


class LocalState:
    def __init__(self, data: Path, partitions: int, freshness: float = 0.05) -> None:
        self.data = data
        self.partitions = partitions
        self.freshness = freshness
        self.dbs: dict[int, Rdict] = {}
        self.caught_up: dict[int, float] = {}

    def get(self, key: bytes) -> bytes | None:
        """The record of the user with this key, if this machine holds their partition and them."""
        partition = kafka.partition_for(key, self.partitions)
        db = self._db(partition)
        if db is None:
            return None
        now = time.monotonic()
        if now - self.caught_up.get(partition, 0.0) > self.freshness:
            db.try_catch_up_with_primary()
            self.caught_up[partition] = now
        return db.get(key)

    def _db(self, partition: int) -> Rdict | None:
        db = self.dbs.get(partition)
        if db is None and table_path(self.data, partition).exists():
            options = Options(raw_mode=True)
            options.set_max_open_files(-1)  # what RocksDB asks of secondaries
            secondary = self.data / "edge" / f"secondary-{partition}"
            secondary.mkdir(parents=True, exist_ok=True)
            db = self.dbs[partition] = Rdict(
                str(table_path(self.data, partition)), options, access_type=AccessType.secondary(str(secondary))
            )
        return db

    def close(self) -> None:
        for db in self.dbs.values():
            db.close()
        self.dbs.clear()
