"""``/dashboard`` on a running edge: its data after some events, a page that fetches nothing from
elsewhere, the admin token enforced, and the page drawn by a real headless browser."""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from tests.serving.conftest import client_beside, over_http
from tests.streams.harness import WorkerProcess, produce
from velox.control import owners, topics, versions
from velox.kafka import clients
from velox.local.broker import free_bootstrap
from velox.model.store import ModelStore
from velox.model.synthetic import planted
from velox.schemas import ids, observation, partitioning
from velox.schemas.model_version import VersionInfo
from velox.schemas.observation import Observation
from velox.serving.monitor import Monitor
from velox.settings import Settings

TOKEN = {"Authorization": "Bearer s3cret"}


@pytest.fixture(scope="module")
def dashboard(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Settings]]:
    """An edge (admin token ``s3cret``) beside a worker with its metrics page, on an activated version."""
    own = settings.replace(data=tmp_path_factory.mktemp("dashboard"), namespace=f"d{uuid.uuid4().hex[:8]}-",
                           partitions=2, admin_token="s3cret", metrics_interval=0.5,
                           worker_metrics_port=int(free_bootstrap().split(":")[1]))
    topics.ensure(own)
    trained = replace(planted(users=10, items=6, d=3, seed=1), id="v1")
    ModelStore(own.model_store).save(trained, VersionInfo(id="v1", created_at=time.time(), d=3, training_end={},
                                                          validation_rmse=0.9, reason="schedule: every 60 s"))
    versions.activate(own, "v1", reason="schedule: every 60 s")
    worker = WorkerProcess(own)
    worker.start()
    worker.wait_ready()
    with client_beside(own, worker) as client:
        yield client, own


def observe(own: Settings, worker_count: int = 5) -> None:
    events = [Observation(user=u, item=u % 6, score=4.0, time=0) for u in range(worker_count)]
    produce(own, own.topic("observations"), [(e.key, observation.encode(e)) for e in events])


def until(client: TestClient, ready: Any, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = client.get("/dashboard/data", headers=TOKEN).json()
        if ready(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def points(found: dict[str, Any], name: str) -> int:
    return sum(len(line) for line in found["series"][name]["lines"].values())


def highest(found: dict[str, Any], name: str) -> float:
    return max((value for line in found["series"][name]["lines"].values() for _, value in line), default=0.0)


def test_dashboard_data_after_some_events(dashboard: tuple[TestClient, Settings]) -> None:
    client, own = dashboard
    until(client, lambda f: points(f, "lag") >= 4)  # the monitor samples: what follows moves its plots
    observe(own)
    for user in range(5):
        assert client.get("/v1/models/default/predict", params={"user": user, "item": 1}).status_code == 200
        client.get("/v1/models/default/top_k", params={"user": user, "k": 3})
        client.get("/v1/models/default/top_k", params={"user": user, "k": 3})  # a cache hit
    found = until(client, lambda f: all(highest(f, name) > 0 for name in ("error", "freshness", "applied",
                                                                          "predictions", "latency", "cache"))
                  and {e["kind"] for e in f["timeline"]} >= {"trained", "activated", "swapped"})
    series = found["series"]
    assert set(series) == {"error", "freshness", "applied", "lag", "predictions", "latency", "cache", "defaults",
                           "decisions"}
    assert {label.split(" ")[0] for label in series["error"]["lines"]} == {"v1"}
    assert set(series["lag"]["lines"]) == {"partition 0", "partition 1"}
    assert max(v for _, v in series["applied"]["lines"]["events/s"]) > 0
    assert max(v for _, v in series["predictions"]["lines"]["predict"]) > 0
    assert max(v for _, v in series["cache"]["lines"]["hit rate"]) > 0
    assert all(0 < v <= 30 for _, v in series["freshness"]["lines"]["p99"])
    kinds = {(e["kind"], e["version"]) for e in found["timeline"]}
    assert {("trained", "v1"), ("activated", "v1"), ("swapped", "v1")} <= kinds
    assert [e["detail"] for e in found["timeline"] if e["kind"] == "trained"] == ["schedule: every 60 s"]


def test_dashboard_needs_the_admin_token_and_references_no_other_site(dashboard: tuple[TestClient, Settings]) -> None:
    client, _ = dashboard
    assert client.get("/dashboard").status_code == 401
    assert client.get("/dashboard/data").status_code == 401
    assert client.get("/dashboard", params={"token": "wrong"}).status_code == 401
    page = client.get("/dashboard", params={"token": "s3cret"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert client.get("/dashboard", headers=TOKEN).status_code == 200
    linked = re.findall(r'(?:src|href)="([^"]*)"', page.text)
    assert linked == ["/dashboard/plots.js"] and "http" not in page.text and "@import" not in page.text
    script = client.get("/dashboard/plots.js")
    assert script.status_code == 200
    # The one URL in the script is SVG's namespace, a name that is never fetched.
    assert re.findall(r"https?://[^\"'`\s]+", script.text) == ["http://www.w3.org/2000/svg"]
    assert "import(" not in script.text and "@font-face" not in page.text


PANELS = ("error", "freshness", "applied", "lag", "predictions", "latency", "cache", "defaults", "decisions")


def decide_and_default(client: TestClient, own: Settings) -> None:
    """Decisions of an app, and default answers: partition 1 claimed for a while by a worker whose edge
    does not answer (the real worker's claim holds again once that one gives it up)."""
    assert client.put("/v1/apps/movies", json={"default_output": 3.0, "policy": "epsilon"}, headers=TOKEN).status_code == 200
    for model in ("default", "popularity"):
        assert client.post(f"/v1/apps/movies/models/{model}", headers=TOKEN).status_code == 200
    for user in range(10):
        assert client.get("/v1/apps/movies/predict", params={"user": user, "item": 1}).status_code == 200
    ghost = own.replace(worker_id="ghost", edge_port=int(free_bootstrap().split(":")[1]))
    producer = clients.producer(own)
    owners.announce(ghost, producer, [1])
    stranded = [u for u in range(100) if partitioning.home(ids.key(u), own.partitions) == 1][:5]
    deadline = time.monotonic() + 30
    while not client.get("/v1/models/default/predict", params={"user": stranded[0], "item": 1}).json()["default"]:
        assert time.monotonic() < deadline, "the ghost's claim never reached the edge"
        time.sleep(0.1)
    for user in stranded:
        client.get("/v1/models/default/predict", params={"user": user, "item": 1})
    owners.announce(ghost, producer, [])


def browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(browser() is None, reason="no chromium on this machine (Debian: apt-get install chromium)")
def test_the_page_draws_every_panel_in_a_headless_browser_without_errors(
        dashboard: tuple[TestClient, Settings], tmp_path: Path) -> None:
    """The page as a browser runs it: its DOM after the script drew, and what the browser logged.
    A screenshot goes to the test's folder for a person to look at."""
    client, own = dashboard
    observe(own)
    decide_and_default(client, own)
    found = until(client, lambda f: all(highest(f, name) > 0 for name in PANELS if name != "lag"))
    assert all(highest(found, name) > 0 for name in PANELS if name != "lag"), found["series"]
    with over_http(client.app) as url:
        page = f"{url}/dashboard?token=s3cret"
        flags = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
                 "--window-size=1400,1300", "--virtual-time-budget=6000", f"--user-data-dir={tmp_path / 'profile'}",
                 "--enable-logging=stderr", "--v=0"]
        shot = subprocess.run([*flags, f"--screenshot={tmp_path / 'dashboard.png'}", page], check=False,
                              capture_output=True, text=True, timeout=120)
        dom = subprocess.run([*flags, "--dump-dom", page], check=False, capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0 and shot.returncode == 0, dom.stderr[-2000:]
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    print(f"screenshot: {tmp_path / 'dashboard.png'}")
    logged = dom.stderr + shot.stderr
    assert not re.search(r"CONSOLE.*(Error|error)|Uncaught|Failed to load resource", logged), logged[-3000:]
    drawn = dict(re.findall(r'id="panel-(\w+)"[^>]*data-points="(\d+)"', dom.stdout))
    assert set(drawn) == set(PANELS) and all(int(drawn[name]) > 0 for name in PANELS), drawn
    assert 'data-refreshed="' in dom.stdout and '<div id="status">model default' in dom.stdout


def test_a_retrain_and_a_rollback_add_marks_to_the_timeline(dashboard: tuple[TestClient, Settings]) -> None:
    client, own = dashboard
    newer = replace(planted(users=10, items=6, d=3, seed=2), id="v2")
    ModelStore(own.model_store).save(newer, VersionInfo(id="v2", created_at=time.time(), d=3, training_end={},
                                                        validation_rmse=0.8, reason="drift: online RMSE 1.3"))
    versions.activate(own, "v2", reason="drift: online RMSE 1.3")
    versions.activate(own, "v1", reason="activated by hand", by_hand=True)
    wanted = {("trained", "v2", "drift: online RMSE 1.3"), ("activated", "v2", "drift: online RMSE 1.3"),
              ("rolled back", "v1", "activated by hand")}
    found = until(client, lambda f: wanted <= {(e["kind"], e["version"], e["detail"]) for e in f["timeline"]})
    assert wanted <= {(e["kind"], e["version"], e["detail"]) for e in found["timeline"]}
    times = [e["at"] for e in found["timeline"]]
    assert times == sorted(times)


def test_the_monitor_samples_the_worker_without_a_tls_context_a_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each tick asks the worker's metrics page through the monitor's one client: a client made per
    call (``httpx.get``) builds a TLS context, the CA bundle parsed, every second in every process."""
    made, original = [], ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context", lambda *a, **k: made.append(1) or original(*a, **k))
    monitor = Monitor(Settings(worker_metrics_port=int(free_bootstrap().split(":")[1])))  # nothing listens there
    with httpx.Client(timeout=0.5) as client:
        before = len(made)
        for tick in range(3):
            monitor._sample_worker(client, time.time())
    assert len(made) == before
