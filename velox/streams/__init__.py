"""The worker: observations in, per-user weights updated in RocksDB, model versions swapped beside the live states. Never imports serving or batch."""
