"""The edge's versions: those no answer uses let go, then loaded again off the event loop when a
record needs one. (Records on the outgoing version answered with its corrections through a switch:
tests/serving/test_corrections.py, with a worker publishing the new version's totals.)"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import uuid
from dataclasses import replace

import pytest

from velox.control import topics, versions
from velox.kafka import positions
from velox.model.store import ModelStore
from velox.model.synthetic import planted
from velox.model.version import ModelVersion
from velox.schemas.model_version import VersionInfo
from velox.serving import models as models_module
from velox.serving.models import Models
from velox.settings import Settings


def stored(own: Settings, *names: str) -> dict[str, ModelVersion]:
    store, saved = ModelStore(own.model_store), {}
    for seed, name in enumerate(names):
        saved[name] = replace(planted(users=10, items=6, d=3, seed=seed), id=name)
        store.save(saved[name], VersionInfo(id=name, created_at=time.time(), d=3,
                                            training_end=positions.end_offsets(own, own.topic("observations"))))
    return saved


def switched(models: Models, own: Settings, name: str) -> None:
    versions.activate(own, name, reason="test")
    deadline = time.monotonic() + 30
    while models.active.id != name:
        assert time.monotonic() < deadline, f"{name} not active after 30 s"
        time.sleep(0.01)


def test_a_version_no_answer_uses_is_let_go_and_loaded_again_in_a_thread_when_a_record_needs_it(
        settings: Settings, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models_module, "IDLE", 0.3)
    # Without corrections: a version is activated at once (no worker here publishes totals).
    own = settings.replace(data=tmp_path, namespace=f"m{uuid.uuid4().hex[:8]}-", partitions=1,
                           item_shrinkage=math.inf)
    topics.ensure(own)
    saved = stored(own, "a", "b", "c")
    versions.activate(own, "a", reason="test")
    loads: list[tuple[str, str]] = []
    load = Models._load
    monkeypatch.setattr(Models, "_load", lambda self, version_id: (
        loads.append((version_id, threading.current_thread().name)), load(self, version_id))[1])
    models = Models(own)
    try:
        switched(models, own, "b")
        switched(models, own, "c")  # "a" is neither active nor the one before now
        deadline = time.monotonic() + 10
        while "a" in models.loaded:
            assert time.monotonic() < deadline, "a version no answer used was kept"
            time.sleep(0.05)
        assert models.serving("a") is None and models.serving("b") is not None  # the one before is kept
        loads.clear()
        served = asyncio.run(models.load("a"))
        assert loads == [("a", "velox-version-load")]  # not on the thread that awaited it
        w = saved["a"].prior(3)
        assert served.version.id == "a" and served.version.score(w, 2) == saved["a"].score(w, 2)
        again = models.serving("a")
        assert again is not None and again.version is served.version
    finally:
        models.close()
