"""What the dashboard plots, gathered by a background thread into ring buffers: the request path pays nothing.

Every ``TICK`` seconds the thread reads what arrived on ``model-metrics`` (online error per version
and partition), ``model-versions`` (activations and rollbacks) and ``decisions`` (each app's choices),
the worker group's positions on ``observations`` (lag and events applied per second, every
partition), the local worker's metrics page (produce-to-visible freshness), this edge's own
Prometheus metrics (predictions, latency, cache hits, default answers) and the model store's
versions (trained, with the retrain's trigger). Each series keeps its last ``POINTS`` points and
the timeline its last ``EVENTS`` events, so memory stays bounded however long the edge runs;
``snapshot`` is what ``/dashboard/data`` answers.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx
import msgspec
from confluent_kafka import TopicPartition
from prometheus_client import REGISTRY, CollectorRegistry, Gauge, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from velox.control import compacted, versions
from velox.kafka import clients, positions
from velox.model.store import ModelStore
from velox.schemas import error_window, model_version
from velox.settings import Settings

log = logging.getLogger("velox.monitor")

TICK = 1.0  # seconds between samples
HISTORY = 900.0  # seconds a plot shows, and how far back the topics are read at start
POINTS = int(HISTORY / TICK)  # points kept per series
EVENTS = 500  # timeline events kept
VERSIONS = 6  # versions whose error series are kept (the most recent)
ONLINE_RMSE = Gauge("velox_edge_online_rmse", "The latest online RMSE on model-metrics, by version and partition "
                    "(the same at every edge: for Prometheus, which cannot read a topic).", ["version", "partition"])
TITLES = {
    "error": "online RMSE per version and partition (model-metrics)",
    "freshness": "produce to visible, seconds (local worker)",
    "applied": "events applied per second",
    "lag": "lag per partition (observations not yet applied)",
    "predictions": "requests per second at this edge",
    "latency": "latency at this edge, ms",
    "cache": "cache hit rate at this edge",
    "defaults": "default answers per second, by cause",
    "decisions": "apps' decisions per second, by model",
}


class Decided(msgspec.Struct):
    """The fields of a ``decisions`` record the dashboard counts."""

    app: str
    model: str


decode_decided = msgspec.json.Decoder(Decided).decode


def quantile(bounds: Sequence[float], counts: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile of a histogram's observations (non-cumulative ``counts`` per bucket, the
    last +Inf), as the upper bound of the bucket it falls in; None for no observations.

    >>> quantile([0.1, 0.5, 1.0], [5, 4, 1, 0], 0.5), quantile([0.1, 0.5, 1.0], [0, 0, 0, 0], 0.5)
    (0.1, None)
    """
    total = sum(counts)
    if total <= 0:
        return None
    seen = 0.0
    for bound, count in zip([*bounds, float("inf")], counts):
        seen += count
        if seen >= q * total:
            return bound if bound != float("inf") else bounds[-1]
    return bounds[-1]


class Histogram:
    """One histogram's buckets as scraped: the bounds, and the counts since the previous scrape."""

    def __init__(self) -> None:
        self.before: dict[float, float] = {}

    def since(self, cumulative: dict[float, float]) -> tuple[list[float], list[float]]:
        bounds = sorted(cumulative)
        now = [cumulative[b] for b in bounds]
        before = [self.before.get(b, 0.0) for b in bounds]
        self.before = cumulative
        deltas = [n - b for n, b in zip(now, before)]
        per_bucket = [deltas[0], *(deltas[i] - deltas[i - 1] for i in range(1, len(deltas)))]
        return [b for b in bounds if b != float("inf")], per_bucket


def buckets(samples: Iterable[Any], name: str) -> dict[float, float]:
    """A histogram's cumulative bucket counts by upper bound, summed over its labels."""
    found: dict[float, float] = defaultdict(float)
    for sample in samples:
        if sample.name == f"{name}_bucket":
            found[float(sample.labels["le"])] += sample.value
    return dict(found)


def edge_metrics(folder: Path | None) -> CollectorRegistry:
    """This process's metrics; for an edge of several processes (their metric files in
    ``folder``: prometheus_client's multiprocess mode), all of theirs added up."""
    if folder is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, str(folder))
    return registry


class Monitor:
    """``metrics_folder``: where the edge's processes write their metrics, when it runs several."""

    def __init__(self, settings: Settings, metrics_folder: Path | None = None) -> None:
        self.settings, self.metrics_folder = settings, metrics_folder
        self.series: dict[str, dict[str, deque[tuple[float, float]]]] = defaultdict(dict)
        self.timeline: deque[dict[str, Any]] = deque(maxlen=EVENTS)
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="velox-monitor", daemon=True)
        self._counters: dict[str, float] = {}
        self._sampled = False  # whether _sample_edge ran once: counters seen later start from 0
        self._latency, self._freshness = Histogram(), Histogram()
        self._trained: set[str] = set()
        self._active: model_version.Activation | None = None
        self._swapped: set[tuple[str, int]] = set()
        self._applied: dict[int, int] | None = None
        self._applied_at = self._last = time.time()
        self._versions_seen: dict[str, float] = {}  # version → its latest error window's end

    def start(self) -> Monitor:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"now": time.time(), "span": HISTORY,
                    "series": {name: {"title": TITLES[name], "lines": {label: list(points) for label, points
                                                                       in sorted(self.series.get(name, {}).items())}}
                               for name in TITLES},
                    "timeline": sorted(self.timeline, key=lambda event: event["at"])}

    def add(self, name: str, label: str, at: float, value: float | None) -> None:
        if value is not None:
            with self.lock:
                self.series[name].setdefault(label, deque(maxlen=POINTS)).append((at, value))

    def event(self, at: float, kind: str, version: str, detail: str = "") -> None:
        with self.lock:
            self.timeline.append({"at": at, "kind": kind, "version": version, "detail": detail})

    def _run(self) -> None:
        try:
            readers = self._readers()
        except Exception as exc:  # the dashboard stays empty; the edge serves on
            log.error("the dashboard's monitor could not start: %s: %s", type(exc).__name__, exc)
            return
        tick, failed = 0, ""
        while not self._stop.wait(TICK):
            try:
                now = time.time()
                dt, self._last = max(now - self._last, 1e-3), now
                self._read_versions(readers["versions"])
                self._read_metrics(readers["metrics"])
                self._read_decisions(readers["decisions"], now, dt)
                self._sample_edge(now, dt)
                self._sampled = True
                self._sample_worker(readers["worker"], now)
                if tick % 2 == 0:
                    self._sample_positions(readers["positions"], now)
                if tick % 10 == 0:
                    self._read_store(now)
                failed = ""
            except Exception as exc:  # one bad sample is skipped, the next tick tries again
                if f"{type(exc).__name__}: {exc}" != failed:  # said once while it lasts, not every second
                    failed = f"{type(exc).__name__}: {exc}"
                    log.warning("dashboard sample failed: %s", failed)
            tick += 1
        for reader in readers.values():
            reader.close()

    def _readers(self) -> dict[str, Any]:
        settings, since = self.settings, time.time() - HISTORY
        versions.ensure_topic(settings)
        group = f"{settings.app_id}-dashboard-{uuid.uuid4().hex[:8]}"
        readers: dict[str, Any] = {"versions": compacted.CompactedReader(settings, versions.topic(settings)),
                                   "positions": clients.consumer(settings, group=settings.app_id),
                                   "worker": httpx.Client(timeout=0.5)}  # one: each new client loads the CA bundle
        for name, topic in (("metrics", settings.topic("model-metrics")), ("decisions", settings.topic("decisions"))):
            reader = clients.consumer(settings, group=group)  # (both topics made by Edge.open)
            reader.assign([TopicPartition(topic, 0, positions.offset_at(reader, topic, 0, since))])
            readers[name] = reader
        self._read_versions(readers["versions"], list(readers["versions"].existing()))
        return readers

    def _read_versions(self, reader: compacted.CompactedReader, messages: list[Any] | None = None) -> None:
        for message in reader.new() if messages is None else messages:
            if message.key() != self.settings.model.encode() or message.value() is None:
                continue
            activation = model_version.decode_activation(message.value())
            before = self._active
            back = before is not None and activation.version.created_at < before.version.created_at
            self.event(activation.activated_at, "rolled back" if back else "activated", activation.version.id,
                       activation.reason)
            self._active = activation

    def _read_metrics(self, reader: Any) -> None:
        for message in reader.consume(5000, timeout=0):
            if message.error() is not None:
                continue
            window = error_window.decode(message.value())
            self.add("error", f"{window.version} p{window.partition}", window.end, window.rmse)
            ONLINE_RMSE.labels(version=window.version, partition=str(window.partition)).set(window.rmse)
            self._versions_seen[window.version] = max(window.end, self._versions_seen.get(window.version, 0.0))
            active = self._active
            if active is not None and window.version == active.version.id and window.end >= active.activated_at \
                    and (window.version, window.partition) not in self._swapped:
                self._swapped.add((window.version, window.partition))
                self.event(window.end, "swapped", window.version, f"partition {window.partition}")
        for old in sorted(self._versions_seen, key=self._versions_seen.__getitem__)[:-VERSIONS]:
            del self._versions_seen[old]  # only the most recent versions' series are kept
            with self.lock:
                error = self.series.get("error", {})
                for label in [label for label in error if label.startswith(old + " ")]:
                    del error[label]
                    ONLINE_RMSE.remove(old, label.split(" p")[-1])

    def _read_decisions(self, reader: Any, now: float, dt: float) -> None:
        counts: dict[str, int] = defaultdict(int)
        for message in reader.consume(5000, timeout=0):
            if message.error() is None:
                decided = decode_decided(message.value())
                counts[f"{decided.app}: {decided.model}"] += 1
        with self.lock:
            labels = set(self.series.get("decisions", {})) | set(counts)
        for label in labels:
            self.add("decisions", label, now, counts.get(label, 0) / dt)

    def _rate(self, key: str, total: float, dt: float) -> float | None:
        """The counter's increase per second since the last sample. A counter first seen after the first
        sample was made since (a label's first use); at the first, what it counted before is unknown."""
        before = self._counters.get(key, 0.0 if self._sampled else None)
        self._counters[key] = total
        return None if before is None else max(total - before, 0.0) / dt

    def _sample_edge(self, now: float, dt: float) -> None:
        families = {family.name: family.samples for family in edge_metrics(self.metrics_folder).collect()
                    if family.name in ("velox_edge_request_seconds", "velox_edge_cache_lookups",
                                       "velox_edge_default_answers")}
        requests: dict[str, float] = defaultdict(float)
        for sample in families.get("velox_edge_request_seconds", []):
            if sample.name.endswith("_count"):
                requests[sample.labels["route"]] += sample.value
        for route, total in requests.items():
            rate = self._rate(f"requests {route}", total, dt)
            if total:  # the routes asked at least once
                self.add("predictions", route, now, rate)
        bounds, counts = self._latency.since(buckets(families.get("velox_edge_request_seconds", []),
                                                     "velox_edge_request_seconds"))
        for q in (0.5, 0.99):
            value = quantile(bounds, counts, q) if bounds else None
            self.add("latency", f"p{q * 100:g}", now, None if value is None else value * 1000)
        lookups = {result: sum(s.value for s in families.get("velox_edge_cache_lookups", [])
                               if s.name.endswith("_total") and s.labels["result"] == result) for result in ("hit", "miss")}
        hits, misses = (self._rate(f"cache {r}", lookups[r], dt) for r in ("hit", "miss"))
        if hits is not None and misses is not None and hits + misses > 0:
            self.add("cache", "hit rate", now, hits / (hits + misses))
        causes: dict[str, float] = defaultdict(float)
        for sample in families.get("velox_edge_default_answers", []):
            if sample.name.endswith("_total"):
                causes[sample.labels["cause"]] += sample.value
        for cause, total in causes.items():
            self.add("defaults", cause, now, self._rate(f"defaults {cause}", total, dt))

    def _sample_worker(self, client: httpx.Client, now: float) -> None:
        """Freshness from the worker beside this edge (its histogram: the workers elsewhere have their own).

        Through one client for the monitor's life: ``httpx.get`` makes a client per call, which
        builds a TLS context (the CA bundle parsed) even for plain HTTP: the costliest step of a
        tick, taken from the cores the event loop answers on (bench/topk.py's tail)."""
        if not self.settings.worker_metrics_port:
            return
        try:
            page = client.get(f"http://127.0.0.1:{self.settings.worker_metrics_port}/metrics").text
        except httpx.HTTPError:
            return
        samples = [s for family in text_string_to_metric_families(page) if family.name == "velox_worker_visible_seconds"
                   for s in family.samples]
        bounds, counts = self._freshness.since(buckets(samples, "velox_worker_visible_seconds"))
        for q in (0.5, 0.99):
            self.add("freshness", f"p{q * 100:g}", now, quantile(bounds, counts, q) if bounds else None)

    def _sample_positions(self, reader: Any, now: float) -> None:
        topic = self.settings.topic("observations")  # of VELOX_PARTITIONS partitions (Edge.open checked)
        tps = [TopicPartition(topic, p) for p in range(self.settings.partitions)]
        done = {tp.partition: max(tp.offset, 0) for tp in positions.committed(reader, tps, timeout=5)}
        for tp in tps:
            self.add("lag", f"partition {tp.partition}", now, positions.watermarks(reader, tp, timeout=5)[1] - done[tp.partition])
        if self._applied is not None:
            dt = max(now - self._applied_at, 1e-3)
            self.add("applied", "events/s", now, sum(done[p] - self._applied.get(p, done[p]) for p in done) / dt)
        self._applied, self._applied_at = done, now

    def _read_store(self, now: float) -> None:
        for info in ModelStore(self._active.store if self._active else self.settings.model_store).list():
            if info.id not in self._trained:
                self._trained.add(info.id)
                if info.created_at >= now - HISTORY:
                    self.event(info.created_at, "trained", info.id, info.reason)
