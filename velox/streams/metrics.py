"""The worker's Prometheus metrics."""

from prometheus_client import Counter, Gauge, Histogram, start_http_server

APPLIED = Counter("velox_worker_events_applied", "Observations applied to a user's state.")
DUPLICATES = Counter("velox_worker_duplicates_skipped", "Replayed observations skipped by their source offset.")
MOVED = Counter(
    "velox_worker_events_moved", "Observations that arrived outside their user's home partition and were moved there.",
    ["partition"],
)
DEAD_LETTERS = Counter("velox_worker_dead_letters", "Bad observations sent to the dead-letter topic.", ["field"])
UNKNOWN_ITEMS = Counter("velox_worker_unknown_items", "Observations of items the active version does not know.")
UPDATE_SECONDS = Histogram(
    "velox_worker_update_seconds", "Decode, load, update and store of one observation.",
    buckets=(5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05),
)
VISIBLE_SECONDS = Histogram(
    "velox_worker_visible_seconds", "From the observation's Kafka timestamp to its update being readable in the table.",
    buckets=(0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5,
             0.75, 1.0, 2.0, 5.0, 10.0, 30.0),
)
SWAPS = Counter("velox_worker_version_swaps", "Model versions this worker rebuilt its users' states on.")
CONSUMER_LAG = Gauge("velox_worker_consumer_lag", "Observations not yet processed, per partition.", ["partition"])


def serve(port: int) -> None:
    """Export the metrics on http://127.0.0.1:<port>/metrics from a background thread."""
    start_http_server(port, addr="127.0.0.1")
