"""The cluster's item corrections: every partition's item totals read from ``item-corrections``, summed per version.

The workers count the corrections' sufficient statistics of their partitions and publish them
(``velox.streams.item_tallies``, format ``velox.schemas.item_totals``); a follower reads the
topic's every partition. It starts, per partition, at the latest complete snapshot the last
message names and reads to the end (at most about twice the totals' size, whatever the length of
``observations``, which it never reads), then follows. It keeps per (version, partition) the
cumulative totals, and per version their sum over the partitions (each message adds its
differences from what that partition held), so an edge (``velox.serving.live_corrections``) or
a worker judging the model as served (``velox.streams.engine``) gets c_x without summing the
partitions again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid

import numpy as np
from confluent_kafka import Message, TopicPartition

from velox.errors import InvalidItemTotals
from velox.kafka import clients, positions, topic_admin
from velox.model.corrections import ItemTotals
from velox.schemas import item_totals
from velox.settings import Settings

log = logging.getLogger("velox.control.item_corrections")

VERSIONS_KEPT = 3  # versions whose totals are kept: the active one, the one before, a new one
BOOTSTRAP_TIMEOUT = 60.0
ESTIMATE_EVERY = 1.0  # seconds between two estimates of a version's k

RETENTION_MS = str(7 * 24 * 3600 * 1000)  # a worker snapshots its partitions far more often (item_tallies)


def topic(settings: Settings) -> str:
    return settings.topic("item-corrections")


def ensure_topic(settings: Settings) -> None:
    """The topic, partitioned as ``observations`` (a source partition's totals go to its number)."""
    topic_admin.create_topics(settings, {topic(settings): settings.partitions}, {"retention.ms": RETENTION_MS})


class ItemCorrectionsFollower:
    """Every partition's item totals per version, read from the topic, then followed by a thread."""

    def __init__(self, settings: Settings, interval: float = 0.1) -> None:
        self.settings, self.topic = settings, topic(settings)
        self.parts: dict[tuple[str, int], ItemTotals] = {}
        self.totals: dict[str, ItemTotals] = {}  # per version: the sum over its partitions
        self.changes: dict[str, int] = {}  # per version: messages taken, for readers that cache
        self.lock = threading.Lock()  # held while totals change, and by a reader of several arrays
        self.messages = 0  # messages read (what an edge reads for its corrections, and nothing else)
        self._k: dict[str, tuple[int, float, float]] = {}  # version → (generation, when, k)
        self.reader = clients.consumer(settings, group=f"{settings.app_id}-item-corrections-{uuid.uuid4().hex[:8]}")
        self._bootstrap()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, args=(interval,), name="velox-item-corrections",
                                        daemon=True)
        self._thread.start()

    def _bootstrap(self) -> None:
        """Per partition: the last message names the latest snapshot; read from there to the end."""
        started = time.monotonic()
        marks = {p: positions.watermarks(self.reader, TopicPartition(self.topic, p)) for p in range(self.settings.partitions)}
        ends = {p: high for p, (low, high) in marks.items() if high > low}
        starts = {p: low for p, (low, _) in marks.items()}
        if ends:
            self.reader.assign([TopicPartition(self.topic, p, high - 1) for p, high in ends.items()])
            found: dict[int, int] = {}
            while len(found) < len(ends) and time.monotonic() - started < BOOTSTRAP_TIMEOUT:
                for message in self._read(1.0):
                    if message.offset() == ends[message.partition()] - 1:
                        found[message.partition()] = _snapshot_of(message)
            for p, snapshot in found.items():
                starts[p] = max(snapshot, marks[p][0])  # (-1, or past the retention: the partition's beginning)
        self.reader.assign([TopicPartition(self.topic, p, offset) for p, offset in starts.items()])
        behind = dict(ends)
        while behind and time.monotonic() - started < BOOTSTRAP_TIMEOUT:
            self._take(self._read(1.0))
            at = self.reader.position([TopicPartition(self.topic, p) for p in behind])
            behind = {tp.partition: behind[tp.partition] for tp in at if tp.offset < behind[tp.partition]}
        if behind:
            log.warning("item corrections: partitions %s not read to their end within %.0f s; reading on",
                        sorted(behind), BOOTSTRAP_TIMEOUT)
        log.info("item corrections: %d messages read in %.2f s, versions %s", self.messages,
                 time.monotonic() - started, sorted(self.totals))

    def _read(self, timeout: float) -> list[Message]:
        return [m for m in clients.arrived(self.reader, 1000, timeout) if m.error() is None]

    def _take(self, messages: list[Message]) -> None:
        for message in messages:
            self.messages += 1
            try:
                found = item_totals.decode(message.value())
            except InvalidItemTotals as exc:
                log.warning("skipped %s[%d]@%d: %s", self.topic, message.partition(), message.offset(), exc)
                continue
            with self.lock:
                if found.version not in self.totals:
                    self._make_room()
                    self.totals[found.version] = ItemTotals()
                    self.changes[found.version] = 0
                part = self.parts.setdefault((found.version, found.partition), ItemTotals())
                change = part.assign(found.codes, found.sums, found.squares, found.counts.astype(np.float64),
                                     found.names)
                self.totals[found.version].add_totals(*change, found.names)
                self.changes[found.version] += 1

    def _make_room(self) -> None:
        """Forget the oldest versions' totals beyond ``VERSIONS_KEPT`` (dicts keep their order of arrival)."""
        while len(self.totals) >= VERSIONS_KEPT:
            oldest = next(iter(self.totals))
            del self.totals[oldest], self.changes[oldest]
            self._k.pop(oldest, None)
            for key in [key for key in self.parts if key[0] == oldest]:
                del self.parts[key]

    def _follow(self, interval: float) -> None:
        while not self._stop.is_set():
            self._take(self._read(interval))
            self._refresh()

    def _refresh(self) -> None:
        """Estimate k again for each version whose totals changed, at most every ``ESTIMATE_EVERY``
        seconds: here in the follower's thread, not in a reader's call (the estimate reads every
        item's totals: at a million items, tens of milliseconds of the worker's loop each second)."""
        if self.settings.item_shrinkage is not None:
            return
        for version_id in list(self.totals):
            cached = self._k.get(version_id)
            if cached is None or (cached[0] != self.generation(version_id)
                                  and time.monotonic() - cached[1] >= ESTIMATE_EVERY):
                self._estimate(version_id)  # (this thread alone changes the totals: no lock to read them)

    def _estimate(self, version_id: str) -> float:
        generation, totals = self.generation(version_id), self.totals.get(version_id)
        k = math.inf if totals is None else totals.shrinkage(self.settings.item_shrinkage_floor)
        self._k[version_id] = (generation, time.monotonic(), k)
        return k

    def published(self, version_id: str) -> bool:
        """Whether every partition has published its totals on the version (all switched to it)."""
        with self.lock:
            return all((version_id, p) in self.parts for p in range(self.settings.partitions))

    def generation(self, version_id: str) -> int:
        """Changes whenever the version's totals do."""
        return self.changes.get(version_id, 0)

    def shrinkage(self, version_id: str) -> float:
        """The k the version's corrections are served with: the setting's, else estimated with its
        floor (∞: none served), here the first time, then by the follower's thread (``_refresh``)."""
        if self.settings.item_shrinkage is not None:
            return self.settings.item_shrinkage
        if (cached := self._k.get(version_id)) is not None:
            return cached[2]
        with self.lock:
            return self._estimate(version_id)

    def settled(self, version_id: str) -> int:
        """The generation the version's k was estimated at (the current one when k is set): a reader
        that caches under it builds again once the estimate catches up."""
        cached = self._k.get(version_id)
        return self.generation(version_id) if self.settings.item_shrinkage is not None or cached is None else cached[0]

    def values(self, version_id: str, items: np.ndarray) -> np.ndarray:
        """c_x of ``items`` as the version is served (0 where none)."""
        k = self.shrinkage(version_id)
        with self.lock:
            totals = self.totals.get(version_id)
            return np.zeros(len(items)) if totals is None else totals.values(items, k)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.reader.close()


def _snapshot_of(message: Message) -> int:
    try:
        return item_totals.decode(message.value()).snapshot
    except InvalidItemTotals:
        return -1
