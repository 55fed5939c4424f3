"""The edge's view of the worker's partition DBs: real RocksDB files, opened as secondaries."""

from __future__ import annotations

from pathlib import Path

from velox.state.layout import table_path
from velox.state.partition_store import PartitionStore
from velox.state.reader import LocalState


def test_a_partition_db_the_worker_is_still_creating_is_opened_once_complete(tmp_path: Path) -> None:
    """An edge starting while a worker creates a partition's DB (its folder there, ``CURRENT`` not yet)
    must not fail on it (it did: "No such file or directory: .../CURRENT"), and reads it once made."""
    table_path(tmp_path, 1).mkdir(parents=True)  # what a worker has made of partition 1 so far
    primary = PartitionStore(table_path(tmp_path, 0))
    primary.db.put(b"7", b"seven")
    primary.db.flush()
    state = LocalState(tmp_path, 2)
    try:
        assert state.get(0, b"7") == b"seven"
        assert state.get(1, b"8") is None
        table_path(tmp_path, 1).rmdir()
        made = PartitionStore(table_path(tmp_path, 1))
        made.db.put(b"8", b"eight")
        made.db.flush()
        assert state.get(1, b"8") == b"eight"
        made.close()
    finally:
        state.close()
        primary.close()
