"""The watch loop against the real broker: a trigger starts the job; a failed job is reported and changes nothing."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

from tests.streams.harness import produce
from velox.batch.controller import Controller, Triggers
from velox.control import retrain_requests, topics, versions
from velox.schemas import observation
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

    def failing_job(reason: str) -> None:
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
    Controller(own, Triggers(after=10**9, debounce=0), reasons.append, poll=0.1).run(runs=1)
    assert reasons == ["requested: new items arrived"]
    retrain_requests.send(own, "second")
    later = Controller(own, Triggers(after=10**9, debounce=0), reasons.append, poll=0.1)
    later.run(runs=1)  # a restarted controller: the handled request was committed, only the new one runs
    assert reasons == ["requested: new items arrived", "requested: second"]
