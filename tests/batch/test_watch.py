"""The watch loop against the real broker: a trigger starts the job; a failed job is reported and changes nothing."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from tests.streams.harness import produce
from velox.batch.controller import Controller, Triggers
from velox.control import health, pins, retrain_requests, topics, versions
from velox.kafka import clients
from velox.model.store import ModelStore
from velox.model.synthetic import planted
from velox.schemas import error_window, observation
from velox.schemas.error_window import ErrorWindow
from velox.schemas.model_version import Pin, VersionInfo
from velox.schemas.observation import Observation
from velox.settings import Settings


def test_watch_starts_the_job_after_n_observations_and_reports_a_failure(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    own = settings.replace(data=tmp_path, namespace=f"w{uuid.uuid4().hex[:8]}-", partitions=2)
    topics.ensure(own)
    events = [Observation(user=u, item=1, score=3.0, time=0) for u in range(50)]
    produce(own, own.topic("observations"), [(e.key, observation.encode(e)) for e in events])
    reasons: list[str] = []

    def failing_job(reason: str, activate: bool) -> None:
        reasons.append(reason)
        raise RuntimeError("boom: the Spark job died")

    caplog.set_level(logging.INFO, logger="velox.controller")
    Controller(own, Triggers(after=50, debounce=0), failing_job, poll=0.1).run(runs=1)

    assert reasons == ["50 new observations (threshold 50)"]
    assert "retrain starting: 50 new observations (threshold 50)" in caplog.text
    assert "retrain failed" in caplog.text and "RuntimeError: boom: the Spark job died" in caplog.text
    assert versions.active(own) is None


def test_a_request_logged_through_the_edge_starts_one_run_and_is_not_run_again(settings: Settings, tmp_path: Path) -> None:
    own = settings.replace(data=tmp_path, namespace=f"w{uuid.uuid4().hex[:8]}-", partitions=2)
    topics.ensure(own)
    retrain_requests.send(own, "new items arrived")  # before the controller ever ran: still honoured
    reasons: list[str] = []
    Controller(own, Triggers(after=10**9, debounce=0), lambda reason, activate: reasons.append(reason), poll=0.1).run(runs=1)
    assert reasons == ["requested: new items arrived"]
    retrain_requests.send(own, "second")
    later = Controller(own, Triggers(after=10**9, debounce=0), lambda reason, activate: reasons.append(reason), poll=0.1)
    later.run(runs=1)  # a restarted controller: the handled request was committed, only the new one runs
    assert reasons == ["requested: new items arrived", "requested: second"]


def test_an_operators_rollback_holds_against_planted_drift_until_unpinned(settings: Settings, tmp_path: Path) -> None:
    """``velox model activate`` of an older version pins it: the drift trigger's run saves a version but
    does not activate it; once unpinned, the next run activates again."""
    own = settings.replace(data=tmp_path, namespace=f"w{uuid.uuid4().hex[:8]}-", partitions=1)
    topics.ensure(own)
    store = ModelStore(own.model_store)
    for name in ("old", "new"):
        store.save(replace(planted(users=5, items=4, d=3, seed=1), id=name),
                   VersionInfo(id=name, created_at=time.time(), d=3, training_end={}, validation_rmse=0.5))
    versions.activate(own, "new", reason="schedule: every 60 s")
    versions.activate(own, "old", reason="activated by hand", by_hand=True)  # the rollback
    assert pins.current(own) == Pin(own.model, "old", pins.current(own).at, "activated by hand")
    producer = clients.producer(own)
    runs: list[tuple[str, bool]] = []

    def watch() -> None:
        controller = Controller(own, Triggers(drift=0.1, window=1, debounce=0),
                                lambda reason, activate: runs.append((reason, activate)), poll=0.1)
        worker = threading.Thread(target=controller.run, kwargs={"runs": 1})
        worker.start()
        deadline = time.monotonic() + 60
        while worker.is_alive():  # planted drift: the rolled-back-to version's error far above 0.5
            assert time.monotonic() < deadline, "the drift trigger never fired"
            now = time.time()
            producer.produce(own.topic("model-metrics"), value=error_window.encode(ErrorWindow("old", 0, now - 0.2, now, 50, 2.0, 1.5)))
            producer.flush(10)
            time.sleep(0.2)
        worker.join()

    watch()
    assert runs[0][0].startswith("drift: online RMSE 2.0000") and runs[0][1] is False  # saved, not activated
    assert versions.active(own).version.id == "old"
    said = health.report(own, interval=0).controller  # what velox status shows of the controller
    assert said.last_outcome == "trained a version, not activated: old is pinned"
    assert said.triggers == "drift 10% over the validation RMSE for 1 s; 0 s between runs"
    pins.unpin(own)
    watch()
    assert runs[1][0].startswith("drift:") and runs[1][1] is True
