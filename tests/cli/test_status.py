"""``velox status`` against a running system: healthy is exit 0 with every section's real values; a
killed worker (its partitions without owner, then their lag growing), a dead container and an unreachable
broker are exit 1 with the reason in one line."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest

from tests.local.test_broker import velox
from tests.streams.harness import WorkerProcess, produce, wait_until_committed
from velox.cli import build_parser
from velox.control import app_registry, container_registry, health, topics, versions
from velox.local.broker import free_bootstrap
from velox.model.store import ModelStore
from velox.model.synthetic import planted
from velox.schemas import application, observation
from velox.schemas.application import App, Decision
from velox.schemas.container_rpc import Replica
from velox.schemas.model_version import VersionInfo
from velox.schemas.observation import Observation
from velox.settings import Settings


@pytest.fixture(scope="module")
def system(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, WorkerProcess]]:
    """A worker on an activated version, 40 observations applied, an app with three decisions."""
    own = settings.replace(data=tmp_path_factory.mktemp("status"), namespace=f"s{uuid.uuid4().hex[:8]}-", partitions=2,
                           worker_metrics_port=0, metrics_interval=0.5)
    topics.ensure(own)
    trained = replace(planted(users=10, items=6, d=3, seed=1), id="v1")
    ModelStore(own.model_store).save(trained, VersionInfo(id="v1", created_at=time.time(), d=3, training_end={},
                                                          training_rows=123, validation_rmse=0.9,
                                                          reason="drift: online RMSE 1.2 above 1.0 for 60 s"))
    versions.activate(own, "v1", reason="drift: online RMSE 1.2 above 1.0 for 60 s")
    worker = WorkerProcess(own)
    worker.start()
    worker.wait_ready()
    events = [Observation(user=u % 10, item=u % 6, score=3.0, time=0) for u in range(40)]
    produce(own, own.topic("observations"), [(e.key, observation.encode(e)) for e in events])
    wait_until_committed(own, own.topic("observations"), worker)
    app_registry.save(own, App("movies", 3.0, models=[own.model, "popularity"], policy="epsilon"))
    decided = [Decision(f"d{i}", "movies", i, model, 0.5, "epsilon", time.time(), False, {})
               for i, model in enumerate([own.model, own.model, "popularity"])]
    produce(own, own.topic("decisions"), [(b"movies", application.encode(d)) for d in decided])
    try:
        yield own, worker
    finally:
        worker.stop()


def status(own: Settings, capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, str]:
    """``velox status FLAGS`` in this process (the command's own code; a subprocess costs seconds to start)."""
    args = build_parser().parse_args(["status", *flags])
    code = args.run(own, args)
    return code, capsys.readouterr().out


def test_status_of_a_healthy_system_exits_0_with_every_section(system: tuple[Settings, WorkerProcess],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    own, _ = system
    deadline = time.monotonic() + 60
    while True:  # until the worker's first error windows are on model-metrics
        code, shown = status(own, capsys, "--json", "--interval", "1")
        found = json.loads(shown)
        if found["model"] and found["model"]["online_count"] == 40 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert code == 0 and found["healthy"] and found["problems"] == [], shown
    assert [(p["partition"], p["owner"], p["lag"]) for p in found["partitions"]] == [(0, "worker-1", 0), (1, "worker-1", 0)]
    assert sum(p["applied"] for p in found["partitions"]) == 40
    assert found["brokers"] and {t["name"] for t in found["topics"]} >= {own.topic("observations"), own.topic("owners")}
    [worker] = found["workers"]
    assert (worker["worker"], worker["edge"], worker["partitions"], worker["in_group"]) == (
        "worker-1", own.edge_url, [0, 1], True)
    model = found["model"]
    assert (model["version"], model["training_rows"], model["validation_rmse"], model["online_count"]) == (
        "v1", 123, 0.9, 40)
    assert model["online_rmse"] > 0 and model["activated_because"].startswith("drift:")
    assert found["last_retrain"]["trigger"].startswith("drift:") and found["last_retrain"]["active"]
    [app] = found["apps"]
    assert (app["policy"], app["decisions"], app["shares"]) == ("epsilon", 3, {own.model: 2 / 3, "popularity": 1 / 3})

    screen = velox("status", "--interval", "0", settings=own)  # the command itself, once
    assert screen.returncode == 0, screen.stdout
    with capsys.disabled():
        print(screen.stdout)  # for a person to look at (pytest -s)
    lines = screen.stdout.splitlines()
    assert lines[0] == f"Velox at {own.bootstrap}: healthy"
    for words in ("brokers: 1", "  0: owner worker-1, applied", "  worker-1: partitions 0, 1, edge ",
                  "model default: version v1, activated", "validation RMSE 0.9000, online RMSE since its activation",
                  "last retrain: version v1", "drift: online RMSE over the last minute",
                  "retrain controller: none has run",
                  "app movies: policy epsilon, models default, popularity; of its last 3 decisions: default 67%"):
        assert any(words in line for line in lines), (words, screen.stdout)


def test_status_names_a_dead_container_and_partitions_without_owner(settings: Settings, tmp_path) -> None:
    own = settings.replace(data=tmp_path, namespace=f"s{uuid.uuid4().hex[:8]}-", partitions=2)
    topics.ensure(own)
    announcer = container_registry.Announcer(own)
    announcer.register(Replica("ranker", "1", "0", "127.0.0.1:1", 1, time.time() - 60))  # its heartbeat long past
    announcer.producer.flush(10)
    found = health.report(own, interval=0)
    assert found.problems == ["partitions 0, 1 have no owner (no worker holds them)",
                              "container ranker has no live replica"]


def test_status_exits_1_at_once_when_the_broker_does_not_answer(settings: Settings,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    shown = velox("status", "--timeout", "1", settings=settings.replace(bootstrap=free_bootstrap()))
    assert shown.returncode == 1
    assert shown.stdout.startswith("Velox at ") and "UNHEALTHY: Kafka at " in shown.stdout and "did not answer" in shown.stdout
    code, as_json = status(settings.replace(bootstrap=free_bootstrap()), capsys, "--json", "--timeout", "1")
    assert code == 1 and json.loads(as_json)["healthy"] is False


def test_status_after_the_worker_is_killed_names_the_partitions_without_owner(
        system: tuple[Settings, WorkerProcess], capsys: pytest.CaptureFixture[str]) -> None:
    """Last in the module: its worker's claim stays on ``owners``; the group drops it after its session."""
    own, worker = system
    worker.kill9()
    deadline = time.monotonic() + 60
    while (shown := status(own, capsys, "--interval", "0"))[0] == 0:
        assert time.monotonic() < deadline, shown[1]
        time.sleep(1)
    assert shown[1].splitlines()[0] == (f"Velox at {own.bootstrap}: UNHEALTHY: partitions 0, 1 have no owner "
                                        "(no worker holds them)"), shown[1]
    assert "no longer in the worker group" in shown[1]
    stop = threading.Event()

    def keep_observing() -> None:  # while status reads the lag twice, 2 s apart
        while not stop.is_set():
            produce(own, own.topic("observations"), [(b"3", observation.encode(Observation(user=3, item=1, score=2.0, time=0)))])
            time.sleep(0.1)

    feeding = threading.Thread(target=keep_observing)
    feeding.start()
    try:
        code, growing = status(own, capsys, "--json", "--interval", "2")
    finally:
        stop.set()
        feeding.join()
    found = json.loads(growing)
    assert code == 1
    [stalled] = [p for p in found["partitions"] if p["stalled"]]
    assert f"partition {stalled['partition']}'s lag is growing ({stalled['lag']}) and its owner (none) applied nothing" \
        in found["problems"]
