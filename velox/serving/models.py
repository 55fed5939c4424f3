"""The versions the edge scores with: the active one, and any a stored record is on.

A record carries the id of the version its weights belong to, and a prediction always uses
that version's θ, so during a swap (some users rebuilt, others not yet) no answer mixes θ of
one version with w of another. Versions are loaded from the model store once and kept.
"""

from __future__ import annotations

import threading
import time

from velox.control import versions
from velox.model.store import ModelStore
from velox.model.version import ModelVersion
from velox.settings import Settings


class Models:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.follower = versions.Follower(settings)
        activation = self.follower.latest()
        self.store = ModelStore(activation.store if activation else settings.model_store)
        self.active = self._load(activation.version.id) if activation else versions.initial_version(settings)
        self.loaded: dict[str, ModelVersion] = {self.active.id: self.active}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="velox-versions", daemon=True)
        self._thread.start()

    def version_of(self, record_version: str | None) -> ModelVersion:
        """The version a user's record is on (the active one for users without a record)."""
        if record_version is None or record_version == self.active.id:
            return self.active
        if record_version not in self.loaded:
            self.loaded[record_version] = self._load(record_version)
        return self.loaded[record_version]

    def _load(self, version_id: str) -> ModelVersion:
        return self.store.load(version_id)

    def _follow(self) -> None:
        while not self._stop.is_set():
            activation = self.follower.poll()
            if activation is not None and activation.version.id != self.active.id:
                self.store = ModelStore(activation.store)
                self.active = self.version_of(activation.version.id)
            time.sleep(0.1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.follower.close()
