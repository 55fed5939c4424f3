"""The versions the edge scores with: the active one, and any a stored record is on.

A record carries the id of the version its weights belong to, and a prediction always uses
that version's θ, so during a swap (some users rebuilt, others not yet) no answer mixes θ of
one version with w of another. Versions are loaded from the model store once and kept. Every
version is served with its own item corrections (``velox.serving.live_corrections``), the one
active before a switch included, so a user whose record a swap has not rebuilt yet gets the
answers they got before it, never the version uncorrected. A newly announced version becomes
active once every partition has published its corrections on it (each worker's swap sends
them as it switches a partition), not after a fixed silence.
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
        self.corrections = Corrections(settings)
        self._activate(trained)
        self.corrections.start()
        self._pending: Activation | None = None  # announced, its corrections not yet published
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="velox-versions", daemon=True)
        self._thread.start()

    @property
    def active(self) -> ModelVersion:
        return self.corrections.served(self._active).version

    def serving(self, record_version: str | None) -> Served:
        """The version a user's record is on (the active one for users without a record), as served."""
        active = self._active
        if record_version is None or record_version == active.id:
            return self.corrections.served(active)
        if record_version not in self.loaded:
            self.loaded[record_version] = self._load(record_version)
        return self.corrections.served(self.loaded[record_version])

    def trained(self, version_id: str) -> ModelVersion:
        """A version served, as trained: without the item corrections (what it knows itself)."""
        return self.loaded[version_id]

    def _load(self, version_id: str) -> ModelVersion:
        return with_index(self.settings, self.store, self.store.load(version_id))

    def _activate(self, trained: ModelVersion) -> None:
        """Serve ``trained`` as the active version, its corrections built first (here, not in a request)."""
        self.corrections.active = trained.id
        self.corrections.served(trained)
        self._active = trained

    def _follow(self) -> None:
        while not self._stop.is_set():
            activation = self.follower.poll() or self._pending
            if activation is not None and activation.version.id != self._active.id:
                self.store = ModelStore(activation.store)
                if activation.version.id not in self.loaded:
                    self.loaded[activation.version.id] = self._load(activation.version.id)
                ready = self.corrections.ready(activation.version.id)
                if ready:
                    self._activate(self.loaded[activation.version.id])
                self._pending = None if ready else activation
            time.sleep(0.1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.corrections.close()
        self.follower.close()
