"""The versions the edge scores with: the active one, and any a stored record is on.

A record carries the id of the version its weights belong to, and a prediction always uses
that version's θ, so during a swap (some users rebuilt, others not yet) no answer mixes θ of
one version with w of another. Every version is served with its own item corrections
(``velox.serving.live_corrections``), the one active before a switch included, so a user whose
record a swap has not rebuilt yet gets the answers they got before it, never the version
uncorrected. A newly announced version becomes active once every partition has published its
corrections on it (each worker's swap sends them as it switches a partition), not after a fixed
silence; or, if they are not all published within ``UNPUBLISHED_AFTER`` seconds (no worker running,
or one stuck), without them, said in the log: an operator's activation is not held forever.

The edge cannot list which versions its records are on without reading them all, so use stands
for need: a version neither active nor the one before is let go once no answer used it for
``IDLE`` seconds, or, beyond ``KEPT`` of them, the least recently used (a version holds every
user's vector: hundreds of megabytes at millions of users). A record on a version not loaded
has it loaded again, in a thread, the request awaiting it: never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Future

from velox.control import versions
from velox.model.store import ModelStore
from velox.model.version import ModelVersion
from velox.schemas.model_version import Activation
from velox.serving.item_content import ItemContent
from velox.serving.live_corrections import Corrections, Served
from velox.serving.top_k_index import with_index
from velox.settings import Settings

log = logging.getLogger("velox.serving.models")

IDLE = 300.0  # seconds without an answer after which a version other than the active one and the one before goes
KEPT = 2  # such versions kept at most: each holds a version's users
BUSY = 1.0  # seconds: one used this recently is kept over the bound (a request may be answering with it)
UNPUBLISHED_AFTER = 120.0  # seconds an announced version waits for its corrections before it is activated without


class Models:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.follower = versions.Follower(settings)
        activation = self.follower.latest()
        self.store = ModelStore(activation.store if activation else settings.model_store)
        trained = self._load(activation.version.id) if activation else with_index(
            settings, None, versions.initial_version(settings))
        self.loaded: dict[str, ModelVersion] = {trained.id: trained}  # as trained: active, before, any other in use
        self.unstored = set() if activation else {trained.id}  # the initial version: never let go, no store has it
        self.used: dict[str, float] = {}  # when each other loaded version last answered (monotonic)
        self._loads: dict[str, Future[ModelVersion]] = {}  # versions being loaded
        self._lock = threading.Lock()
        self.corrections = Corrections(settings)
        self._before: str | None = None  # the version active before this one: its records are being rebuilt
        self._activate(trained)
        self.corrections.start()
        self._pending: tuple[Activation, float] | None = None  # announced (when), its corrections not yet published
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="velox-versions", daemon=True)
        self._thread.start()

    @property
    def content(self) -> ItemContent:
        """The items' attributes this edge follows."""
        return self.corrections.content

    def features_of(self, version_id: str, item: int) -> str:
        """What scores ``item`` (a code) on a loaded version: its ``trained`` factors, those its
        ``content`` maps to, or ``none`` (zero factors)."""
        found = self.trained(version_id).features_of(item)
        return "content" if found == "none" and self.content.mapped(version_id, item) else found

    @property
    def active(self) -> ModelVersion:
        return self.served.version

    @property
    def served(self) -> Served:
        """The active version, as served (with its corrections): users without a record."""
        return self.corrections.served(self._active)

    def serving(self, record_version: str | None) -> Served | None:
        """The version a user's record is on (the active one for users without a record), as served;
        None if it is not loaded (``load`` it)."""
        active = self._active
        if record_version is None or record_version == active.id:
            return self.corrections.served(active)
        version = self.loaded.get(record_version)
        if version is None:
            return None
        self.used[record_version] = time.monotonic()
        return self.corrections.served(version)

    async def load(self, version_id: str) -> Served:
        """A version a record is on, loaded in a thread while the request awaits it (one load
        however many requests wait); served with its corrections."""
        version = await asyncio.wrap_future(self._loading(version_id))
        self.used[version_id] = time.monotonic()
        return self.corrections.served(version)

    def trained(self, version_id: str) -> ModelVersion:
        """A version served, as trained: without the item corrections (what it knows itself)."""
        return self.loaded[version_id]

    def _loading(self, version_id: str) -> Future[ModelVersion]:
        with self._lock:
            if version_id in self.loaded:
                done: Future[ModelVersion] = Future()
                done.set_result(self.loaded[version_id])
                return done
            if version_id not in self._loads:
                self._loads[version_id] = Future()
                threading.Thread(target=self._load_into, args=(version_id,), name="velox-version-load",
                                 daemon=True).start()
            return self._loads[version_id]

    def _load_into(self, version_id: str) -> None:
        future = self._loads[version_id]
        try:
            version = self._load(version_id)
            self.corrections.served(version)  # its corrections built here too, not in the request
        except BaseException as exc:  # the awaiting requests raise it (a version the store lost: the route's error)
            with self._lock:
                del self._loads[version_id]
            future.set_exception(exc)
            return
        with self._lock:
            self.loaded[version_id] = version
            self.used[version_id] = time.monotonic()
            del self._loads[version_id]
        log.info("version %s loaded for records on it", version_id)
        future.set_result(version)

    def _load(self, version_id: str) -> ModelVersion:
        return with_index(self.settings, self.store, self.store.load(version_id))

    def _activate(self, trained: ModelVersion) -> None:
        """Serve ``trained`` as the active version, its corrections built first (here, not in a
        request); the outgoing one is kept as the one before, its records not all rebuilt yet."""
        self.corrections.active = trained.id
        self.corrections.served(trained)
        outgoing = getattr(self, "_active", None)
        if outgoing is not None:
            if self._before is not None:  # no longer kept: let go once no answer used it for IDLE seconds
                self.used[self._before] = time.monotonic()
            self._before = outgoing.id
        self._active = trained
        self.used.pop(trained.id, None)

    def _follow(self) -> None:
        while not self._stop.is_set():
            announced = self.follower.poll()
            pending = (announced, time.monotonic()) if announced is not None else self._pending
            if pending is not None and pending[0].version.id != self._active.id:
                activation, since = pending
                self.store = ModelStore(activation.store)
                trained = self._loading(activation.version.id).result()
                ready = self.corrections.ready(activation.version.id)
                if not ready and time.monotonic() - since > UNPUBLISHED_AFTER:
                    log.warning("version %s activated without its item corrections: not every partition published "
                                "them within %.0f s (is every worker running?)", activation.version.id,
                                UNPUBLISHED_AFTER)
                    ready = True
                if ready:
                    self._activate(trained)
                self._pending = None if ready else pending
            self._evict(time.monotonic())
            time.sleep(0.1)

    def _evict(self, now: float) -> None:
        """Let go of versions no answer used for ``IDLE`` seconds, and of the least recently used
        beyond ``KEPT`` (but one used within ``BUSY`` seconds)."""
        kept = {self._active.id, self._before, *self.unstored}
        with self._lock:
            for gone in [version_id for version_id in list(self.used) if version_id not in self.loaded]:
                self.used.pop(gone, None)  # stamped by an answer as it was let go
            others = sorted((used, version_id) for version_id, used in list(self.used.items())
                            if version_id not in kept)
            for rank, (used, version_id) in enumerate(others):
                if now - used > IDLE or (len(others) - rank > KEPT and now - used > BUSY):
                    del self.loaded[version_id]
                    del self.used[version_id]
                    log.info("version %s let go: no answer used it for %.0f s", version_id, now - used)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.corrections.close()
        self.follower.close()
