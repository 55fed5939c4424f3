"""The user-state table: one RocksDB per partition, written by the worker, read by the edge.

``layout`` says where the files are, ``partition_store`` writes them (the worker), ``reader``
reads them as RocksDB secondaries (the edge), ``recovery`` brings one up to its changelog.
The record format is a wire format (``velox.schemas.user_state``). Below ``streams`` and
``serving``; imports neither."""
