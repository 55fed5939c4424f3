"""`velox serve --processes 2`: two processes on one port, each with its own secondary instances
of the worker's tables and its own cache, answering the same; metrics added up; a process that
dies is started again while the other answers."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import time
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from tests.serving.processes import EdgeProcess
from tests.streams.harness import WorkerProcess
from velox import processes
from velox.control import topics
from velox.local.broker import free_bootstrap
from velox.settings import Settings

PREDICT = "/v1/models/default/predict"


@pytest.fixture(scope="module")
def edge(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    """One worker and a two-process edge for the module (the last test kills a process)."""
    own = settings.replace(namespace=f"p{uuid.uuid4().hex[:8]}-", data=tmp_path_factory.mktemp("processes"), partitions=2, d=5, items=50,
                           item_shrinkage=math.inf, worker_metrics_port=0, edge_processes=2, admin_token="s3cret",
                           edge_port=int(free_bootstrap().split(":")[1]))
    topics.ensure(own)
    worker, edge = WorkerProcess(own), EdgeProcess(own)
    try:
        worker.start()
        edge.start()
        edge.wait_ready()
        yield edge
    finally:
        edge.stop()
        worker.stop()


def ask(edge: EdgeProcess, path: str) -> tuple[str, dict]:
    """The answer and which process gave it (a new connection each time: the kernel picks)."""
    with urllib.request.urlopen(f"{edge.settings.edge_url}{path}", timeout=10) as response:
        return response.headers["x-velox-process"], json.loads(response.read())


def answers_from_each(edge: EdgeProcess, path: str, done, timeout: float = 60.0) -> dict[str, dict]:
    """Ask until each process has given an answer ``done`` accepts; every later answer of a
    process that gave one is accepted too (no cache serves the old answer after it)."""
    given: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while len(given) < 2:
        assert time.monotonic() < deadline, f"answers accepted from processes {sorted(given)} only; see {edge.log}"
        process, body = ask(edge, path)
        if process in given:
            assert done(body), f"process {process} answered {body} after {given[process]}"
        elif done(body):
            given[process] = body
    return given


def test_two_processes_answer_on_one_port_with_the_update_and_add_up_their_metrics(edge) -> None:
    ready = answers_from_each(edge, "/readyz", lambda body: body["ready"])
    assert set(ready) == {"0", "1"}
    path = f"{PREDICT}?user=7&item=3"  # a user no other test asks for
    before = answers_from_each(edge, path, lambda body: not body["known_user"])
    assert edge.post("/v1/models/default/observe", {"user": 7, "item": 3, "score": 5.0}) == 202

    after = answers_from_each(edge, path, lambda body: body["known_user"])
    assert after["0"]["score"] == after["1"]["score"] != before["0"]["score"]
    for subfolder in ("process-0", "process-1"):  # each read the tables through its own secondaries
        assert any((edge.settings.data / "edge" / subfolder).glob("secondary-*"))

    text = urllib.request.urlopen(f"{edge.settings.edge_url}/metrics", timeout=10).read().decode()
    counted = sum(float(n) for n in re.findall(r'velox_edge_request_seconds_count\{route="predict"\} (\S+)', text))
    assert counted >= len(before) + len(after) + 1


def admin(edge: EdgeProcess, method: str, path: str, body: dict | None = None) -> None:
    request = urllib.request.Request(f"{edge.settings.edge_url}{path}", json.dumps(body or {}).encode(),
                                     {"Content-Type": "application/json", "Authorization": "Bearer s3cret"},
                                     method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_an_apps_sticky_choice_made_by_one_process_is_kept_by_the_other(edge) -> None:
    admin(edge, "PUT", "/v1/apps/sticky", {"default_output": 3.0, "policy": "ab", "weights": [0.5, 0.5],
                                           "sticky_s": 600})
    for model in ("default", "popularity"):
        admin(edge, "POST", f"/v1/apps/sticky/models/{model}")
    users = range(100, 120)
    first = {user: ask(edge, f"/v1/apps/sticky/predict?user={user}&item=1")[1]["model"] for user in users}
    assert set(first.values()) == {"default", "popularity"}
    time.sleep(2)  # each process reads the other's decisions as they come: a moment
    for user in users:  # whichever process answers keeps the user's first choice
        chosen = answers_from_each(edge, f"/v1/apps/sticky/predict?user={user}&item=1", lambda body: True)
        assert {body["model"] for body in chosen.values()} == {first[user]}, (user, first[user], chosen)


def test_a_process_that_dies_is_started_again_while_the_other_answers(edge) -> None:
    answers_from_each(edge, "/readyz", lambda body: body["ready"])  # both listening
    started = re.search(r"2 processes, pids \[(\d+), (\d+)\]", edge.log.read_text())
    assert started, edge.log.read_text()
    os.kill(pid := int(started[1]), signal.SIGKILL)
    assert processes.wait_exit(pid, 10)
    time.sleep(0.5)  # a connection the kernel had already handed to its socket as it died is reset: not asked
    answered = {ask(edge, "/healthz")[0] for _ in range(20)}
    assert answered == {"1"}  # the other process answered every request while this one was down
    answers_from_each(edge, "/readyz", lambda body: body["ready"], timeout=90)
    assert "process 0 (pid" in edge.log.read_text() and "started again" in edge.log.read_text()
