"""Versions as the edge serves them: with their item corrections (``velox.model.corrections``),
from the cluster's item totals.

The workers count the corrections' totals of their partitions exactly once and publish them
(``velox.streams.item_tallies``); the edge follows them (``velox.control.item_corrections``) and
never reads ``observations``: it starts from the latest snapshots in seconds whatever the log's
length, and each event is decoded for the corrections once per cluster, by its worker.

Every version the edge serves (the active one, the one before it while a swap rewrites the
users' records, a new one some users are written on already) is served with its own corrections:
a version's totals only cover the partitions that counted on it, so during a swap the old
version's freeze partition by partition as they switch, and a new version's grow as they do (its
first users are served with the corrections of the partitions switched so far, none for the very
first). A version's corrected table is rebuilt in a thread at most every ``refresh`` seconds
when its totals changed (a bias vector; the item table is only extended by items appended since,
``corrected``'s ``previous``), and answers cached under the previous one are not served again
(``generation``). Before the corrections, each version's table is extended with the items it did
not train on whose attributes are known, at the factors and bias its content model maps them to
(``velox.serving.item_content``), rebuilt as the ``items`` topic changes.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import NamedTuple

from prometheus_client import Gauge

from velox.control.item_corrections import VERSIONS_KEPT, ItemCorrectionsFollower
from velox.model.corrections import corrected
from velox.model.index import index_of
from velox.model.version import ModelVersion
from velox.serving.item_content import ItemContent
from velox.settings import Settings

log = logging.getLogger("velox.serving.live_corrections")

MESSAGES = Gauge("velox_edge_correction_messages", "Messages of item-corrections read (the edge reads no observations).")
SHRINKAGE = Gauge("velox_edge_item_shrinkage", "k of the active version's item corrections (inf: none served).")
CORRECTED = Gauge("velox_edge_corrected_items", "Items the active version's corrections have ratings of.")


class Served(NamedTuple):
    version: ModelVersion  # the version with the corrections added
    generation: int  # changes whenever they do: part of the prediction cache's key


class Corrections:
    """Each version served with its corrections, rebuilt as the cluster's totals move."""

    def __init__(self, settings: Settings, refresh: float = 1.0) -> None:
        self.settings, self.refresh = settings, refresh
        off = settings.item_shrinkage is not None and math.isinf(settings.item_shrinkage)
        self.follower = None if off else ItemCorrectionsFollower(settings)
        self.content = ItemContent(settings)  # the items' attributes
        self.active: str | None = None  # the version whose k and items the metrics show
        # version id → (as trained, as served, what it was built from, with its content before the corrections)
        self._served: dict[str, tuple[ModelVersion, Served, tuple[int, int], ModelVersion]] = {}
        self._builds = 0  # every build a new generation: the prediction cache never mixes two tables
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def ready(self, version_id: str) -> bool:
        """Whether the version's corrections are published: every partition has counted on it."""
        return self.follower is None or self.follower.published(version_id)

    def served(self, version: ModelVersion) -> Served:
        """``version`` (as trained) as served now; built at once the first time it is asked for."""
        found = self._served.get(version.id)
        return found[1] if found is not None else self._build(version)

    def shrinkage_served(self, version_id: str) -> float:
        """The k the version's corrections are served with (∞: none)."""
        return math.inf if self.follower is None else self.follower.shrinkage(version_id)

    def _build(self, version: ModelVersion) -> Served:
        """Serve the version's items described by content (``velox.serving.item_content``) and its
        corrections as they are now (from its previous table, if any and the content is the same)."""
        follower, base = self.follower, self.content.applied(version)
        table, basis = base, (0, self.content.changes)
        if follower is not None:
            before = self._served.get(version.id)
            previous = before[1].version if before is not None and before[3] is base else None
            k = follower.shrinkage(version.id)
            basis = (min(follower.generation(version.id), follower.settled(version.id)), basis[1])
            with follower.lock:
                totals = follower.totals.get(version.id)
                if totals is not None:
                    table = corrected(base, totals, k, previous, measured=version)
                items = 0 if totals is None else len(totals)
            if version.id == self.active:
                SHRINKAGE.set(k)
                CORRECTED.set(items)
            MESSAGES.set(follower.messages)
        if table is not version and (index := index_of(table)) is not None:
            index.served_table(table)  # here, off the request path
        with self._lock:
            self._builds += 1
            served = Served(table, self._builds)
            self._served.pop(version.id, None)  # (the most recently built last: the oldest go first)
            self._served[version.id] = (version, served, basis, base)
            while len(self._served) > VERSIONS_KEPT:
                del self._served[next(iter(self._served))]
        return served

    def _basis(self, version_id: str) -> tuple[int, int]:
        """What a version's table is built from now: its totals' generation, the items' attributes' changes."""
        return 0 if self.follower is None else self.follower.generation(version_id), self.content.changes

    def start(self) -> Corrections:
        """Rebuild in a thread from here on."""
        self._thread = threading.Thread(target=self._follow, name="velox-served-corrections", daemon=True)
        self._thread.start()
        return self

    def _follow(self) -> None:
        """Rebuild each version served whose totals or items' attributes changed, at most every
        ``refresh`` seconds, and spend at most a tenth of the time rebuilding."""
        while not self._stop.is_set():
            started = time.monotonic()
            with self._lock:
                stale = [trained for trained, _, basis, _ in self._served.values()
                         if basis != self._basis(trained.id)]
            for trained in stale:
                self._build(trained)
            self._stop.wait(max(self.refresh, 10 * (time.monotonic() - started)))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.follower is not None:
            self.follower.close()
        self.content.close()
