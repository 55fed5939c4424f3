"""Where the user-state table's files are: one RocksDB per partition under the data directory.

Faust's layout (``{tabledir}/{table}-{partition}.db``), so both stream engines keep the same
files, and the edge opens them by the same paths as secondaries.
"""

from __future__ import annotations

from pathlib import Path

TABLE = "user-state"


def table_dir(data: Path) -> Path:
    """Where the worker keeps its tables' files (either engine's: Faust's ``tabledir``)."""
    return data / "worker" / "tables"


def table_path(data: Path, partition: int) -> Path:
    """Where the worker keeps one partition's records: a RocksDB the edge may read as a secondary."""
    return table_dir(data) / f"{TABLE}-{partition}.db"
