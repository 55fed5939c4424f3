"""The package boundaries of DESIGN.md, checked by parsing every import."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pyspark
import pytest

import velox
from velox import jars

PACKAGE = Path(velox.__file__).parent
PROCESS_PACKAGES = ("streams", "serving", "batch", "containers")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", PROCESS_PACKAGES)
def test_process_packages_never_import_each_other(package: str) -> None:
    others = [f"velox.{other}" for other in PROCESS_PACKAGES if other != package]
    for path in (PACKAGE / package).rglob("*.py"):
        bad = {name for name in imported_modules(path) if name.split(".")[:2] in [o.split(".") for o in others]}
        assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}"


@pytest.mark.parametrize("package", ["model", "schemas"])
def test_model_and_schemas_import_no_process_package(package: str) -> None:
    for path in (PACKAGE / package).rglob("*.py"):
        bad = {name for name in imported_modules(path) if name.split(".")[:2] in [["velox", p] for p in PROCESS_PACKAGES]}
        assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}"


def test_only_settings_reads_the_environment() -> None:
    reads = re.compile(r"os\.environ\[|os\.environ\.get|in os\.environ|os\.getenv|environ\.items")
    for path in PACKAGE.rglob("*.py"):
        if path.name != "settings.py":
            assert not reads.search(path.read_text()), f"{path.relative_to(PACKAGE)} reads the environment"


def test_spark_kafka_connector_matches_installed_pyspark() -> None:
    pom = jars.SPARK_KAFKA.pom_path.read_text()
    version = re.search(r"<artifactId>spark-sql-kafka-0-10_2.13</artifactId>\s*<version>([^<]+)</version>", pom)
    assert version is not None
    assert version.group(1) == pyspark.__version__
