"""docker-compose.yml as far as it can be checked without a Docker engine: one process per service,
each a `velox` command the CLI accepts (and Prometheus), health checks, restarts, and only the edge
and Prometheus published, on 127.0.0.1 only; the Grafana dashboard asks only for metrics the
processes export. `make compose-check` (docker/check.py) runs the file for real."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import velox.serving.server  # noqa: F401  (registers the edge's metrics, the monitor's and the selector's)
import velox.streams.worker_metrics  # noqa: F401  (registers the worker's)
from velox.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"


def services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_one_velox_process_per_service_with_commands_velox_accepts() -> None:
    found = services()
    assert set(found) == {"kafka", "worker", "edge", "load", "controller", "prometheus"}
    for name, service in found.items():
        if name == "prometheus":
            continue
        words = shlex.split(service["command"])
        assert words[0] == "velox" and not {"&", "&&", ";", "|", "sh"} & set(words), name
        build_parser().parse_args(words[1:])  # exits (fails the test) on anything unknown


def test_long_running_services_have_health_checks_and_restart_and_the_loader_loads_only_an_empty_system() -> None:
    found = services()
    for name in ("kafka", "worker", "edge", "controller", "prometheus"):
        assert found[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    for name in ("kafka", "worker", "edge", "controller", "prometheus"):
        assert found[name]["restart"] == "unless-stopped", name
    assert "--if-empty" in found["load"]["command"] and found["load"]["restart"] == "on-failure"
    assert "--first" in found["controller"]["command"]
    assert found["controller"]["depends_on"] == {"load": {"condition": "service_completed_successfully"}}


def test_only_the_edge_and_prometheus_are_published_and_only_on_loopback() -> None:
    published = {name: service["ports"] for name, service in services().items() if "ports" in service}
    # Prometheus runs in the worker's network (the worker's metrics listen on its loopback): its port is the worker's.
    assert published == {"edge": ["127.0.0.1:8000:8000"], "worker": ["127.0.0.1:9090:9090"]}
    assert services()["prometheus"]["network_mode"] == "service:worker"


def test_prometheus_scrapes_the_worker_and_the_edge_with_the_configuration_in_the_image() -> None:
    command = shlex.split(services()["prometheus"]["command"])
    assert command[0] == "prometheus" and "--config.file=/app/docker/prometheus.yml" in command
    assert "COPY docker/prometheus.yml docker/prometheus.yml" in (ROOT / "Dockerfile").read_text()
    targets = {job["job_name"]: job["static_configs"][0]["targets"]
               for job in yaml.safe_load((ROOT / "docker" / "prometheus.yml").read_text())["scrape_configs"]}
    assert targets == {"velox-worker": ["127.0.0.1:9464"], "velox-edge": ["edge:8000"]}


def exported() -> set[str]:
    """Every series name the worker and the edge export, as Prometheus sees them."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    return {family.name + suffix for family in REGISTRY.collect() for suffix in suffixes.get(family.type, [""])}


def test_the_grafana_dashboard_asks_only_for_metrics_the_processes_export() -> None:
    board = json.loads((ROOT / "docker" / "grafana" / "velox-dashboard.json").read_text())
    expressions = [target["expr"] for panel in board["panels"] for target in panel["targets"]]
    expressions += [annotation["expr"] for annotation in board["annotations"]["list"]]
    asked = {name for expr in expressions for name in re.findall(r"\bvelox_\w+", expr)}
    assert len(board["panels"]) >= 9 and asked, expressions
    assert asked <= exported(), sorted(asked - exported())


def test_worker_and_edge_share_the_data_volume() -> None:
    found = services()
    assert found["worker"]["volumes"] == found["edge"]["volumes"] == ["velox-data:/data"]
