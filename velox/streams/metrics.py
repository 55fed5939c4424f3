"""The worker's Prometheus metrics."""

from prometheus_client import Counter, Gauge, Histogram

APPLIED = Counter("velox_worker_events_applied", "Observations applied to a user's state.")
DUPLICATES = Counter("velox_worker_duplicates_skipped", "Replayed observations skipped by their source offset.")
DEAD_LETTERS = Counter("velox_worker_dead_letters", "Bad observations sent to the dead-letter topic.", ["field"])
UNKNOWN_ITEMS = Counter("velox_worker_unknown_items", "Observations of items the active version does not know.")
UPDATE_SECONDS = Histogram(
    "velox_worker_update_seconds", "Decode, load, update and store of one observation.",
    buckets=(5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05),
)
CONSUMER_LAG = Gauge("velox_worker_consumer_lag", "Observations not yet processed, per partition.", ["partition"])
