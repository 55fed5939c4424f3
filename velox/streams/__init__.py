"""The worker: observations in, per-user weights updated in RocksDB, model versions swapped beside the live states.

Two engines, ``kafka_engine`` (our own librdkafka loop) and ``faust_engine`` (a Faust agent and
table; ``faust_app`` is its app for ``faust -A``), share ``engine`` (a batch applied), ``swap``
(versions), ``changelog`` and ``checkpoint`` (the commit's steps), ``moves``. Imports ``state``,
``kafka``, ``control``, ``model``, ``schemas``; never ``serving`` or ``batch``."""
