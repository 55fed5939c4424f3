"""One RocksDB (via rocksdict) per partition of the user-state table.

Layout: ``velox.state.layout.table_path``; keys are user ids as the message
keys carry them, values are user-state records (``velox.schemas.user_state``). Beside the
records each DB keeps, under a key no user id can take, the offset of the last changelog
message it has seen, so recovery reads only the changelog after it. Key and format are Faust's
(``faust.stores.rocksdb.Store.offset_key``): the Faust engine's recovery and ours read one another's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from rocksdict import (
    AccessType,
    BlockBasedOptions,
    Cache,
    Options,
    Rdict,
    WriteBatch,
    WriteBufferManager,
)

CHANGELOG_OFFSET_KEY = b"__faust\0offset__"
# Which model version the records are on; also sent to the changelog, so recovery restores it.
VERSION_KEY = b"__velox__version"
RESERVED = (CHANGELOG_OFFSET_KEY, VERSION_KEY)


# One memory budget for every partition's DB in the process, however many it owns: each DB's
# own memtables and block cache made a worker's memory grow with its partitions.
_MEMTABLES = WriteBufferManager(64 * 2**20, False)
_BLOCKS = Cache(32 * 2**20)


def _options() -> Options:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(16 * 2**20)
    options.set_write_buffer_manager(_MEMTABLES)
    table = BlockBasedOptions()
    table.set_block_cache(_BLOCKS)
    options.set_block_based_table_factory(table)
    return options


class PartitionStore:
    def __init__(self, path: Path, read_only: bool = False, opened: Rdict | None = None) -> None:
        """The DB at ``path``; or ``opened``, one someone else opened there (Faust's table) and closes."""
        self.path, self.owned = path, opened is None
        if opened is not None:
            self.db = opened
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        access = AccessType.read_only(False) if read_only else AccessType.read_write()
        self.db = Rdict(str(path), _options(), access_type=access)

    def get(self, key: bytes) -> bytes | None:
        return self.db.get(key)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        """Each key's value (None if absent), in one multi-get."""
        return self.db.get(keys)

    def put(self, key: bytes, value: bytes) -> None:
        self.db.put(key, value)

    @property
    def changelog_offset(self) -> int:
        """Offset of the last changelog message reflected here; -1 if none."""
        stored = self.db.get(CHANGELOG_OFFSET_KEY)
        return -1 if stored is None else int(stored)

    def remember_changelog_offset(self, offset: int) -> None:
        self.db.put(CHANGELOG_OFFSET_KEY, str(offset).encode())

    @property
    def version(self) -> str | None:
        stored = self.db.get(VERSION_KEY)
        return None if stored is None else stored.decode()

    def put_many(self, records: Iterable[tuple[bytes, bytes]]) -> None:
        """Write many records in one atomic batch."""
        batch = WriteBatch(raw_mode=True)
        for key, value in records:
            batch.put(key, value)
        self.db.write(batch)

    def apply_changelog(self, records: Iterable[tuple[bytes, bytes | None]], last_offset: int) -> None:
        """Write a run of records and the offset of the last changelog message they reflect, in one
        atomic batch (records read from the changelog, or a swap's records before they are sent)."""
        batch = WriteBatch(raw_mode=True)
        for key, value in records:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        batch.put(CHANGELOG_OFFSET_KEY, str(last_offset).encode())
        self.db.write(batch)

    def records(self) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self.db.items():
            if key not in RESERVED:
                yield key, value

    def close(self) -> None:
        if self.owned:
            self.db.close()
