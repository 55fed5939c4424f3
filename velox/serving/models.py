"""The versions the edge scores with: the active one, and any a stored record is on.

A record carries the id of the version its weights belong to, and a prediction always uses
that version's θ, so during a swap (some users rebuilt, others not yet) no answer mixes θ of
one version with w of another. Versions are loaded from the model store once and kept. The
active version is served with its item corrections (``velox.serving.live_corrections``); a newly
announced one becomes active once its corrections have read the log to its end, so the switch
never serves a version without them. The version active before keeps the corrections it had
(no longer followed), so a user whose record a swap has not rebuilt yet gets the answers they
got before it; any older version a record is on is served as trained.
"""

from __future__ import annotations

import threading
import time

from velox.control import versions
from velox.model.store import ModelStore
from velox.model.version import ModelVersion
from velox.schemas.model_version import Activation
from velox.serving.live_corrections import Corrections, Served
from velox.serving.top_k_index import with_index
from velox.settings import Settings


class Models:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.follower = versions.Follower(settings)
        activation = self.follower.latest()
        self.store = ModelStore(activation.store if activation else settings.model_store)
        trained = self._load(activation.version.id) if activation else with_index(
            settings, None, versions.initial_version(settings))
        self.loaded: dict[str, ModelVersion] = {trained.id: trained}
        self.corrections = self._corrections(trained, activation)
        self.before: Served | None = None  # the previously active version, as it was last served
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="velox-versions", daemon=True)
        self._thread.start()

    @property
    def active(self) -> ModelVersion:
        return self.corrections.served.version

    def serving(self, record_version: str | None) -> Served:
        """The version a user's record is on (the active one for users without a record), as served."""
        served, before = self.corrections.served, self.before
        if record_version is None or record_version == served.version.id:
            return served
        if before is not None and record_version == before.version.id:
            return before
        if record_version not in self.loaded:
            self.loaded[record_version] = self._load(record_version)
        return Served(self.loaded[record_version], 0)

    def trained(self, version_id: str) -> ModelVersion:
        """A version served, as trained: without the item corrections (what it knows itself)."""
        return self.loaded[version_id]

    def _load(self, version_id: str) -> ModelVersion:
        return with_index(self.settings, self.store, self.store.load(version_id))

    def _corrections(self, trained: ModelVersion, activation: Activation | None) -> Corrections:
        return Corrections(self.settings, trained, activation.version.training_end if activation else {}).start()

    def _follow(self) -> None:
        while not self._stop.is_set():
            activation = self.follower.poll()
            if activation is not None and activation.version.id != self.active.id:
                self.store = ModelStore(activation.store)
                if activation.version.id not in self.loaded:
                    self.loaded[activation.version.id] = self._load(activation.version.id)
                before, self.corrections = self.corrections, self._corrections(
                    self.loaded[activation.version.id], activation)
                before.close()
                self.before = before.served
            time.sleep(0.1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.corrections.close()
        self.follower.close()
