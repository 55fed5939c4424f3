"""The worker: observations in, per-user weights updated in RocksDB, model versions swapped beside the live states.

Two engines share ``engine`` (learning, records, dead letters, swaps): ``worker``, our own
librdkafka loop, and ``faust_app``, a Faust agent and table. Never imports serving or batch."""
