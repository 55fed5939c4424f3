"""`velox up` end to end, as a new user meets it: the whole system, predictions that move with feedback, Ctrl-C
or a closed terminal.

It loads pyspark's MovieLens sample into a new system, trains the first version with Spark,
starts the retrain controller and serves; the test drives it over HTTP and checks that
nothing it started outlives it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.local.test_broker import is_running
from velox.local.broker import LocalBroker, free_bootstrap
from velox.settings import Settings

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")  # py4j's sockets in the Spark child


@contextmanager
def velox_up(own: Settings, log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`velox up` on these settings, its output in ``log``, in a session of its own as in a terminal;
    stopped the clean way (which stops what it started) if the test fails while it runs."""
    with open(log, "wb") as out:
        up = subprocess.Popen([sys.executable, "-m", "velox.cli", "up", *args], env={**os.environ, **own.to_env()},
                              stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield up
    finally:
        if up.poll() is None:
            up.terminate()
            up.wait(90)
            LocalBroker(own).stop()


def call(url: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def call_error(url: str, body: dict[str, Any]) -> str:
    """The detail of the 4xx that ``url`` answers ``body`` with."""
    with pytest.raises(urllib.error.HTTPError) as refused:
        call(url, body)
    assert 400 <= refused.value.code < 500
    return json.loads(refused.value.read())["detail"]


# Ctrl-C in a terminal and a closed terminal both signal the terminal's whole process group;
# `velox reset --yes` from another terminal stops it too, and deletes its data. One of them runs
# the worker on the Faust engine; the reset one is an implicit system, learning from a user's purchases.
# A closed terminal (SIGHUP to the session) is judged on the secured broker (tests/test_secured_kafka.py).
@pytest.mark.parametrize("stop,engine,feedback", [(signal.SIGINT, "kafka", "explicit"), ("reset", "faust", "implicit")],
                         ids=["ctrl-c", "reset-faust-engine-implicit"])
def test_up_serves_a_trained_version_learns_from_feedback_and_ctrl_c_stops_everything(
    settings: Settings, tmp_path: Path, stop: signal.Signals | str, engine: str, feedback: str
) -> None:
    port = int(free_bootstrap().split(":")[1])
    own = settings.replace(data=tmp_path / "data", bootstrap=free_bootstrap(), worker_metrics_port=0, partitions=2)
    log = tmp_path / "up.log"
    base = f"http://127.0.0.1:{port}/v1/models/default"
    with velox_up(own, log, "--port", str(port), "--engine", engine, "--feedback", feedback) as up:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert up.poll() is None, log.read_text()
            try:
                if call(f"http://127.0.0.1:{port}/readyz")["ready"]:
                    break
            except OSError:
                time.sleep(0.5)
        models = call(f"http://127.0.0.1:{port}/v1/models")["models"]
        assert not models[0]["version"].startswith("initial"), models  # the first version, trained with Spark
        scores = {item: call(f"{base}/predict?user=1&item={item}")["score"] for item in range(0, 100, 7)}
        item = min(scores, key=scores.__getitem__)
        before = call(f"{base}/top_k?user=1&k=10")["items"]
        said = {"kind": "purchase"} if feedback == "implicit" else {"score": 5.0}
        for _ in range(5):
            assert call(f"{base}/observe", {"user": 1, "item": item, **said})["status"] == "accepted"
        deadline = time.monotonic() + 1.0
        while (score := call(f"{base}/predict?user=1&item={item}")["score"]) <= scores[item]:
            assert time.monotonic() < deadline, "the score did not move within a second"
            time.sleep(0.02)
        top = call(f"{base}/top_k?user=1&k=10")["items"]
        assert len(top) == 10 and top == sorted(top, key=lambda entry: -entry["score"])
        assert top != before  # the top-k moved with what the user did
        if feedback == "implicit":
            assert "learns from kinds" in call_error(f"{base}/observe", {"user": 1, "item": item, "score": 5.0})
        pids = [int(pid) for pid in re.findall(r"(?:worker|controller) pid (\d+)", log.read_text())]
        worker_log = (own.data / "logs" / "worker.log").read_text()  # (a reset deletes it)
        broker_pid = LocalBroker(own).status().pid
        if stop == "reset":
            reset = subprocess.run([sys.executable, "-m", "velox.cli", "reset", "--yes"],
                                   env={**os.environ, **own.to_env()}, capture_output=True, text=True, timeout=180)
            assert reset.returncode == 0 and f"stopping velox up (pid {up.pid})" in reset.stderr, reset.stderr
            assert not own.data.exists()
        else:
            os.killpg(up.pid, stop)
        assert up.wait(90) == 0, log.read_text()
    text = log.read_text()
    assert ("on the faust" in worker_log) == (engine == "faust")
    assert "curl" in text and "worker stopped (exit 0)" in text and "controller stopped (exit 0)" in text
    assert "kafka stopped" in text and len(pids) == 2
    assert not re.search(r"^%\d\|", text, re.MULTILINE), "librdkafka's own lines on the console"
    assert not any(is_running(pid) for pid in [*pids, broker_pid])
    assert score > scores[item]


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` now: its children, theirs (the retrain's Spark JVM), and so on."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().split(") ")[1].split()
        except (FileNotFoundError, IndexError):
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        found += (children := parents.get(todo.pop(), []))
        todo += children
    return found


def command_line(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""


def test_a_worker_that_dies_while_the_first_version_trains_stops_up_and_everything_it_started(
    settings: Settings, tmp_path: Path,
) -> None:
    own = settings.replace(data=tmp_path / "data", bootstrap=free_bootstrap(), worker_metrics_port=0, partitions=2)
    log = tmp_path / "up.log"
    with velox_up(own, log, "--port", str(int(free_bootstrap().split(":")[1]))) as up:
        deadline = time.monotonic() + 120
        while not any(b"java" in command_line(pid) and b"spark" in command_line(pid) for pid in descendants(up.pid)):
            assert up.poll() is None and time.monotonic() < deadline, log.read_text()  # the first retrain's JVM
            time.sleep(0.2)
        started = [*descendants(up.pid), LocalBroker(own).status().pid]  # the broker runs detached
        worker = next(pid for pid in started if command_line(pid).endswith(b"velox.cli\0worker\0"))
        os.kill(worker, signal.SIGKILL)
        assert up.wait(90) == 1, log.read_text()
    text = log.read_text()
    assert f"the worker exited with -9, so everything stopped; see {own.data / 'logs' / 'worker.log'}" in text
    assert "worker stopped (exit -9)" in text and "kafka stopped" in text and "running:" not in text
    deadline = time.monotonic() + 30  # the JVM exits when the retrain's Python has (its stdin closes)
    while left := [pid for pid in started if is_running(pid)]:
        assert time.monotonic() < deadline, f"processes up started outlived it: {[command_line(p)[:200] for p in left]}"
        time.sleep(0.2)


def test_a_command_stopped_while_it_is_still_starting_exits_cleanly(settings: Settings, tmp_path: Path) -> None:
    own = settings.replace(data=tmp_path, namespace="early-")
    said = tmp_path / "retrain.log"
    with open(said, "wb") as out:
        controller = subprocess.Popen([sys.executable, "-m", "velox.cli", "retrain", "--watch", "--every", "3600"],
                                      env={**os.environ, **own.to_env()}, stdout=subprocess.DEVNULL, stderr=out)
    time.sleep(0.5)  # importing, not yet watching
    controller.send_signal(signal.SIGTERM)
    assert controller.wait(60) == 0, said.read_text()[-3000:]  # what it said, if it failed once in a while
