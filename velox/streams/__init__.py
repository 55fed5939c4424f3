"""The Faust worker: observations in, per-user weights updated in RocksDB. Never imports serving or batch."""
