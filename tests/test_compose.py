"""docker-compose.yml as far as it can be checked without a Docker engine: one process per service,
each a `velox` command the CLI accepts, health checks, restarts, and the edge published on
127.0.0.1 only. `make compose-check` (docker/check.py) runs the file for real."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from velox.cli import build_parser

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.yml"


def services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_one_velox_process_per_service_with_commands_velox_accepts() -> None:
    found = services()
    assert set(found) == {"kafka", "worker", "edge", "load", "controller"}
    for name, service in found.items():
        words = shlex.split(service["command"])
        assert words[0] == "velox" and not {"&", "&&", ";", "|", "sh"} & set(words), name
        build_parser().parse_args(words[1:])  # exits (fails the test) on anything unknown


def test_long_running_services_have_health_checks_and_restart_and_the_loader_loads_only_an_empty_system() -> None:
    found = services()
    for name in ("kafka", "worker", "edge", "controller"):
        assert found[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    for name in ("kafka", "worker", "edge", "controller"):
        assert found[name]["restart"] == "unless-stopped", name
    assert "--if-empty" in found["load"]["command"] and found["load"]["restart"] == "on-failure"
    assert "--first" in found["controller"]["command"]
    assert found["controller"]["depends_on"] == {"load": {"condition": "service_completed_successfully"}}


def test_only_the_edge_is_published_and_only_on_loopback() -> None:
    published = {name: service["ports"] for name, service in services().items() if "ports" in service}
    assert published == {"edge": ["127.0.0.1:8000:8000"]}


def test_worker_and_edge_share_the_data_volume() -> None:
    found = services()
    assert found["worker"]["volumes"] == found["edge"]["volumes"] == ["velox-data:/data"]
