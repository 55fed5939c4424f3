"""The worker's Prometheus metrics."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from confluent_kafka import Producer
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from velox.model.prequential import PrequentialErrors
from velox.schemas import error_window
from velox.settings import Settings


class BatchHistogram:
    """A Prometheus histogram that takes a batch of observations in one call.

    prometheus_client's ``Histogram.observe`` takes one value and two locked increments per
    call: per event, that was a sizeable share of the batched worker's time (profiled under
    ``bench/stream.py``).
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float],
                 registry: CollectorRegistry = REGISTRY) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = np.array(buckets, float)
        self.counts = np.zeros(len(buckets) + 1, np.int64)  # the last is +Inf
        self.total = 0.0
        self.lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: np.ndarray) -> None:
        # Bucket i counts values <= bounds[i]: the first bound not below the value.
        counts = np.bincount(np.searchsorted(self.bounds, values, side="left"), minlength=len(self.counts))
        with self.lock:
            self.counts += counts
            self.total += float(values.sum())

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self.lock:
            cumulative, total = np.cumsum(self.counts).tolist(), self.total
        edges = [floatToGoString(bound) for bound in self.bounds.tolist()] + ["+Inf"]
        yield HistogramMetricFamily(self.name, self.documentation, buckets=list(zip(edges, cumulative)),
                                    sum_value=total)


APPLIED = Counter("velox_worker_events_applied", "Observations applied to a user's state.")
DUPLICATES = Counter("velox_worker_duplicates_skipped", "Replayed observations skipped by their source offset.")
MOVED_BEFORE = Counter(
    "velox_worker_moves_skipped",
    "Misplaced observations read again after a crash that a committed transaction had moved already.",
)
MOVED = Counter(
    "velox_worker_events_moved", "Observations that arrived outside their user's home partition and were moved there.",
    ["partition"],
)
DEAD_LETTERS = Counter("velox_worker_dead_letters", "Bad observations sent to the dead-letter topic.", ["field"])
UNKNOWN_ITEMS = Counter("velox_worker_unknown_items", "Observations of items the active version does not know.")
UPDATE_SECONDS = Histogram(
    "velox_worker_update_seconds", "Decode, load, update and store, per observation (a batch's time over its events).",
    buckets=(5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05),
)
VISIBLE_SECONDS = BatchHistogram(
    "velox_worker_visible_seconds", "From the observation's Kafka timestamp to its update being readable in the table.",
    (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0,
     5.0, 10.0, 30.0),
)
RECORD_BYTES = Counter(
    "velox_worker_record_bytes", "Bytes of user-state records written, to the local table or to the changelog.", ["to"],
)
STAGE_SECONDS = Histogram(
    "velox_worker_stage_seconds",
    "Each step of the kafka engine's loop (fetch: waiting for messages; apply: a batch; commit; swap: following "
    "versions), and the garbage collector's pauses (gc): where a late event's time went (bench/stream.py).",
    ["stage"], buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
)
SWAPS = Counter("velox_worker_version_swaps", "Model versions this worker rebuilt its users' states on.")
CONSUMER_LAG = Gauge("velox_worker_consumer_lag", "Observations not yet processed, per partition.", ["partition"])


class GcPauses:
    """The garbage collector's pauses, kept by its callback and counted in ``STAGE_SECONDS`` by
    ``flush``: the callback only appends (a Prometheus observe takes a lock that the collection may
    have interrupted the holder of)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.pauses: list[float] = []
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self.started)

    def flush(self) -> None:
        pauses, self.pauses = self.pauses, []
        for pause in pauses:
            STAGE_SECONDS.labels(stage="gc").observe(pause)

    def close(self) -> None:
        gc.callbacks.remove(self._callback)


def serve(port: int) -> None:
    """Export the metrics on http://127.0.0.1:<port>/metrics from a background thread."""
    start_http_server(port, addr="127.0.0.1")


def publish(settings: Settings, producer: Producer, errors: PrequentialErrors, positions: dict[int, int],
            highwater: Callable[[int], int | None]) -> None:
    """Send the prequential error windows closed since the last call to ``model-metrics``, and set
    each partition's lag from its high watermark (as the engine's consumer knows it)."""
    topic = settings.topic("model-metrics")
    for window in errors.drain():
        producer.produce(topic, key=window.version.encode(), value=error_window.encode(window))
    for partition, position in positions.items():
        high = highwater(partition)
        if high is not None and high >= 0:
            CONSUMER_LAG.labels(partition=str(partition)).set(max(high - position, 0))
