"""docker-compose.yml cannot be run here (no Docker engine), so check what can be: its services and
that every `velox ...` command in it is one the CLI accepts."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from velox.cli import build_parser

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.yml"


def test_compose_runs_broker_worker_with_edge_loader_and_controller_with_commands_velox_accepts() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert set(services) == {"kafka", "worker", "load", "controller"}
    commands = [c for s in services.values() if "command" in s for c in re.findall(r"velox ([^&;|\"]+)", s["command"])]
    assert len(commands) == 5
    for command in commands:
        build_parser().parse_args(shlex.split(command))  # exits (fails the test) on anything unknown
    assert services["worker"]["ports"] == ["8000:8000"]
