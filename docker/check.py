"""`make compose-check`: docker-compose.yml run for real, and the loop checked end to end.

Builds the image, starts the services, waits for the edge, asks a prediction, sees `velox status`
healthy, Prometheus scraping the worker and the edge and /dashboard/data answering, observes five
5.0 ratings and sees the score move; crashes the worker (SIGKILL to its process, as a real crash)
and sees Docker restart it with its state intact; `down` and `up` again and sees the observation
count unchanged (no second load) and no second first version; then `down -v`. The edge's port is
published on 127.0.0.1 only, and every request goes there. Prints one line per step with its time.

Not `docker kill` for the crash: the engine marks a killed container as stopped by hand and no
restart policy brings it back (moby's daemon/kill.go, `HasBeenManuallyStopped`).

    python docker/check.py [--project velox-check] [--keep]

Needs a running Docker engine and the base image (docker/base-image.sh, which `make compose-check`
runs first).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
EDGE = "http://127.0.0.1:8000"
PROMETHEUS = "http://127.0.0.1:9090"
MODEL = f"{EDGE}/v1/models/default"
USER, ITEM = 1, 2
CHECKED = ("kafka", "worker", "edge", "controller", "prometheus")  # the services with a health check
RATED = (10, 11, 12, 13, 14)  # the items the check rates 5.0
COUNT = ("python -c \"from velox.kafka import positions; from velox.settings import Settings; s = Settings.from_env(); "
         "print(sum(positions.end_offsets(s, s.topic('observations')).values()))\"")
started = time.monotonic()


def say(line: str) -> None:
    print(f"[{time.monotonic() - started:6.1f} s] {line}", flush=True)


def compose_command() -> list[str]:
    """`docker compose` where the plugin is installed, else the standalone docker-compose."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    sys.exit("neither `docker compose` nor docker-compose is installed (Debian: apt-get install docker-compose)")


class Compose:
    def __init__(self, project: str) -> None:
        self.base = [*compose_command(), "-p", project, "-f", str(ROOT / "docker-compose.yml")]

    def __call__(self, *args: str, capture: bool = False) -> str:
        result = subprocess.run([*self.base, *args], cwd=ROOT, text=True,
                                capture_output=capture, stdout=None if capture else subprocess.DEVNULL)
        if result.returncode != 0:
            sys.exit(f"{' '.join(args)} failed ({result.returncode}): {(result.stderr or '')[-2000:]}")
        return result.stdout or ""

    def container(self, service: str) -> str:
        """The id of the service's container, running or exited."""
        return self("ps", "-a", "-q", service, capture=True).strip()

    def run_in(self, service: str, command: str) -> str:
        return self("exec", "-T", service, "sh", "-c", command, capture=True).strip()


def inspect(container: str) -> dict:
    out = subprocess.run(["docker", "inspect", container], capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]


def wait_ready(timeout: float = 600.0) -> float:
    """Seconds until the edge's /readyz answers 200."""
    begun = time.monotonic()
    while time.monotonic() - begun < timeout:
        try:
            if httpx.get(f"{EDGE}/readyz", timeout=2.0).status_code == 200:
                return time.monotonic() - begun
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    sys.exit(f"the edge was not ready within {timeout:.0f} s")


def prediction() -> dict:
    answer = httpx.get(f"{MODEL}/predict", params={"user": USER, "item": ITEM}, timeout=5.0)
    answer.raise_for_status()
    body = answer.json()
    if body.get("default"):
        sys.exit(f"the edge answered its default, not the user's state: {body}")
    return body


def score() -> float:
    return float(prediction()["score"])


def trained() -> bool:
    """Whether the user is answered from a trained version (not the random one before the first retrain)."""
    return not prediction()["version"].startswith("initial-")


def wait_for(what: str, check, timeout: float = 120.0) -> float:  # type: ignore[no-untyped-def]
    begun = time.monotonic()
    while time.monotonic() - begun < timeout:
        if check():
            return time.monotonic() - begun
        time.sleep(0.5)
    sys.exit(f"{what}: not within {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default="velox-check", help="the compose project name (its containers, volumes)")
    parser.add_argument("--keep", action="store_true", help="leave the services running (no down -v)")
    args = parser.parse_args()
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        sys.exit("no Docker engine answers: start dockerd (Debian: apt-get install docker.io; dockerd &)")
    compose = Compose(args.project)
    compose("down", "-v")  # what an interrupted earlier check left
    begun = time.monotonic()
    compose("build")
    say(f"images built in {time.monotonic() - begun:.0f} s")
    try:
        check(compose)
    finally:
        if not args.keep:
            compose("down", "-v")
            say("down -v: containers and volumes removed")


def check(compose: Compose) -> None:
    begun = time.monotonic()
    compose("up", "-d")
    waited = wait_ready()
    say(f"up -d: edge ready after {waited:.0f} s (answering from the random initial version)")
    wait_for("the first version, trained by the controller", trained, timeout=600)
    answer = prediction()
    first = float(answer["score"])
    say(f"first prediction from a trained version {time.monotonic() - begun:.0f} s after up: user {USER}, "
        f"item {ITEM}: {first:.4f} ({answer['version']})")
    wait_for("every service healthy", lambda: all(
        inspect(compose.container(name))["State"].get("Health", {}).get("Status") == "healthy" for name in CHECKED))
    say(f"healthy: {', '.join(CHECKED)}; the loader exited "
        f"{inspect(compose.container('load'))['State']['ExitCode']}")
    status = compose.run_in("controller", "velox status --interval 1")  # exits the check if not healthy (1)
    say(f"velox status: {status.splitlines()[0]}")
    wait_for("Prometheus scraping the worker and the edge", lambda: {
        t["labels"]["job"] for t in httpx.get(f"{PROMETHEUS}/api/v1/targets", timeout=5.0).json()["data"]["activeTargets"]
        if t["health"] == "up"} == {"velox-worker", "velox-edge"})
    series = httpx.get(f"{EDGE}/dashboard/data", timeout=5.0).json()["series"]
    say(f"Prometheus scrapes both; /dashboard/data answers {len(series)} series")

    for item in RATED:
        httpx.post(f"{MODEL}/observe", json={"user": USER, "item": item, "score": 5.0}, timeout=5.0).raise_for_status()
    moved = wait_for("the score to move after five 5.0 ratings", lambda: abs(score() - first) > 1e-6)
    after = score()
    say(f"five 5.0 ratings observed: the score moved {first:.4f} -> {after:.4f} within {moved:.1f} s")

    worker = compose.container("worker")
    before = inspect(worker)
    os.kill(before["State"]["Pid"], signal.SIGKILL)
    restarted = wait_for("the worker restarted and healthy", lambda: (
        (state := inspect(worker))["RestartCount"] > before["RestartCount"]
        and state["State"].get("Health", {}).get("Status") == "healthy"), timeout=180)
    wait_ready()
    kept = score()
    if abs(kept - after) > 1e-5:
        sys.exit(f"the worker's state changed across its crash: {after:.4f} before, {kept:.4f} after")
    say(f"worker crashed (SIGKILL to pid {before['State']['Pid']}): restarted by Docker "
        f"(restarts {inspect(worker)['RestartCount']}), healthy after {restarted:.0f} s, score still {kept:.4f}")

    count = int(compose.run_in("kafka", COUNT))
    versions = compose.run_in("controller", "velox model list")
    compose("down")
    begun = time.monotonic()
    compose("up", "-d")
    waited = wait_ready()
    say(f"down, up -d: edge ready after {waited:.0f} s")
    wait_for("the loader to finish", lambda: inspect(compose.container("load"))["State"]["Status"] == "exited", 300)
    again, versions_again = int(compose.run_in("kafka", COUNT)), compose.run_in("controller", "velox model list")
    if again != count:
        sys.exit(f"the observations went from {count} to {again} across down and up: loaded twice?")
    if len(versions_again.splitlines()) != len(versions.splitlines()):
        sys.exit(f"the versions changed across down and up:\n{versions}\n->\n{versions_again}")
    if abs(score() - after) > 1e-5:
        sys.exit(f"the user's score changed across down and up: {after:.4f} -> {score():.4f}")
    say(f"observations {count:,} before and after (no second load); {len(versions.splitlines())} version before "
        f"and after (no second first version); score {after:.4f} kept")


if __name__ == "__main__":
    main()
