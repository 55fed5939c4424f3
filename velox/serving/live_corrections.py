"""The active version's item corrections (``velox.model.corrections``), kept current from ``observations``.

Each edge reads every partition of the log from the version's training end, so every edge serves
the same corrections and none has state to lose: a restarted edge reads the same events again.
Only what a worker applies counts: an event that fails validation (the dead-letter topic has it)
or that landed outside its user's home partition (the worker moves it there, where it is read
again) is skipped, and the log is read committed, so a moved event counts once. The corrected
version is rebuilt at most every ``refresh`` seconds, and answers cached under the previous one
are not served again (``generation``). Reading the log costs each edge a decode of every event
(msgspec) and one vectorized residual per batch read.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
from confluent_kafka import Message, TopicPartition
from prometheus_client import Counter, Gauge

from velox.kafka import clients, positions
from velox.model.corrections import ItemCorrections
from velox.model.index import index_of
from velox.model.version import ModelVersion
from velox.schemas import observation
from velox.settings import Settings

log = logging.getLogger("velox.serving.live_corrections")

READ = Counter("velox_edge_correction_events", "Events of observations read into the item corrections.")
SHRINKAGE = Gauge("velox_edge_item_shrinkage", "k of the item corrections served (inf: none served).")
CORRECTED = Gauge("velox_edge_corrected_items", "Items the served corrections have ratings of.")

CATCH_UP_TIMEOUT = 120.0
QUIET, SILENCE = 2.0, 10.0


class Served(NamedTuple):
    version: ModelVersion  # the version with the corrections added
    generation: int  # changes whenever they do: part of the prediction cache's key


class Corrections:
    """Reads the log after ``training_end`` into a version's corrections: up to the end it has now
    when constructed, then in a thread (``start``) as events arrive."""

    def __init__(self, settings: Settings, version: ModelVersion, training_end: Mapping[int, int],
                 refresh: float = 1.0) -> None:
        self.settings, self.shrinkage, self.refresh = settings, settings.item_shrinkage, refresh
        self.seen = ItemCorrections(version)
        self.served = Served(version, 0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reader = None
        if self.shrinkage is not None and math.isinf(self.shrinkage):
            return
        topic = settings.topic("observations")
        self.reader = clients.consumer(settings, group=f"{settings.app_id}-corrections-{uuid.uuid4().hex[:8]}")
        starts = {p: training_end.get(p, 0) for p in range(settings.partitions)}
        self.reader.assign([TopicPartition(topic, p, offset) for p, offset in starts.items()])
        self._catch_up(starts, {p: positions.watermarks(self.reader, TopicPartition(topic, p))[1] for p in starts})

    def shrinkage_served(self) -> float:
        """The k the corrections are served with: the setting's, else estimated (∞: none served)."""
        return self.seen.shrinkage() if self.shrinkage is None else self.shrinkage

    def _catch_up(self, starts: Mapping[int, int], ends: Mapping[int, int]) -> None:
        """Read until every partition has given its messages up to ``ends``. A transaction's marker
        can be a partition's last offset, which no message reaches: a partition the reader has
        fetched from (its position is known) with nothing more to give for ``QUIET`` seconds is at
        its end too; one it never fetched from (only markers of aborted moves left) is waited for
        up to ``SILENCE`` seconds."""
        started = silent = time.monotonic()
        topic = self.settings.topic("observations")
        behind = {p: end for p, end in ends.items() if starts.get(p, 0) < end}
        while behind:
            if time.monotonic() - started > CATCH_UP_TIMEOUT:
                log.warning("item corrections for %s: not at the log's end after %.0f s; serving what is read, "
                            "reading on", self.seen.version.id, CATCH_UP_TIMEOUT)
                break
            messages = clients.arrived(self.reader, 10_000, 1.0)
            self._take(messages)
            for message in messages:
                if message.offset() + 1 >= behind.get(message.partition(), math.inf):
                    del behind[message.partition()]
            if messages:
                silent = time.monotonic()
                continue
            fetched = all(tp.offset >= 0 for tp in self.reader.position([TopicPartition(topic, p) for p in behind]))
            if time.monotonic() - silent > (QUIET if fetched else SILENCE):
                break
        shrinkage = self._publish()
        log.info("item corrections for %s: %d events read in %.1f s, %d items, shrinkage %g%s",
                 self.seen.version.id, self.seen.events, time.monotonic() - started, len(self.seen.sums),
                 shrinkage, " (estimated)" if self.shrinkage is None else "")

    def _take(self, messages: list[Message]) -> None:
        users, items, scores, names = [], [], [], {}
        for message in messages:
            seen = None if message.error() is not None else observation.counted(
                message.key(), message.value(), message.partition(), self.settings.partitions)
            if seen is None:
                continue
            users.append(seen.user_code)
            items.append(item := seen.item_code)
            scores.append(seen.score)
            if item < 0:
                names[item] = seen.item
        self.seen.add(np.array(users, np.int64), np.array(items, np.int64), np.array(scores, np.float64), names)
        READ.inc(len(users))

    def _publish(self) -> float:
        """Serve the corrections as they are now; return the k served."""
        shrinkage = self.shrinkage_served()
        version = self.seen.corrected(shrinkage)
        if (index := index_of(version)) is not None:
            index.served_table(version)  # here, in the reader's thread, not in the first request after
        self.served = Served(version, self.served.generation + 1)
        SHRINKAGE.set(shrinkage)
        CORRECTED.set(len(self.seen.sums))
        return shrinkage

    def start(self) -> Corrections:
        """Follow the log in a thread from here on."""
        if self.reader is not None:
            self._thread = threading.Thread(target=self._follow, name="velox-item-corrections", daemon=True)
            self._thread.start()
        return self

    def _follow(self) -> None:
        """Read as events arrive; rebuild what is served at most every ``refresh`` seconds, and
        spend at most a tenth of the time rebuilding (the item table and its lookup are rebuilt:
        a cost that grows with the items)."""
        published = self.seen.events
        while not self._stop.is_set():
            self._take(clients.arrived(self.reader, 10_000, 0.1))
            if self.seen.events != published:
                started = time.monotonic()
                self._publish()
                published = self.seen.events
                self._stop.wait(max(self.refresh, 10 * (time.monotonic() - started)))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.reader is not None:
            self.reader.close()
