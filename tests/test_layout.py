"""The layers of ARCHITECTURE.md, checked by parsing every import of the package."""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

import pyspark
import pytest

import velox
from velox.local import jars

PACKAGE = Path(velox.__file__).parent
MAP = PACKAGE.parent / "ARCHITECTURE.md"


def allowed_imports() -> dict[str, set[str]]:
    """The table of ARCHITECTURE.md: each package (or root module) and what it may import."""
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \|([^|]*)\|$", MAP.read_text(), re.M)
    return {name: {part.strip() for part in imports.split(",") if part.strip()} for name, imports in rows}


def units() -> dict[str, Path]:
    """Every module of the package by its dotted name."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(("velox", *path.relative_to(PACKAGE).with_suffix("").parts))
        found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``path`` imports, anywhere in it (inside functions too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                names.add(full if full in modules else node.module)
    return {name for name in names if name in modules and name != "velox"}  # (the root: its version only)


def top(module: str) -> str:
    return module.split(".")[1]


def test_the_map_names_every_package_and_root_module() -> None:
    tops = {top(name) for name in units() if name != "velox"}
    assert tops == set(allowed_imports()), "ARCHITECTURE.md's table and the package disagree"


@pytest.mark.parametrize("unit", sorted(allowed_imports()))
def test_each_package_imports_only_what_the_map_allows(unit: str) -> None:
    modules, allowed = units(), allowed_imports()
    for name, path in modules.items():
        if name == "velox" or top(name) != unit:
            continue
        bad = {other for other in imports(path, modules) if top(other) not in {unit, *allowed[unit]}}
        assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}: not allowed for {unit} (ARCHITECTURE.md)"


def test_no_import_cycle() -> None:
    modules = units()
    graph = {name: imports(path, modules) - {name} for name, path in modules.items()}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(name):] + [name]))
        if name in done:
            return
        for other in sorted(graph[name]):
            if other != name.rsplit(".", 1)[0]:  # a package's own __init__ is not a cycle of its module
                visit(other, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_every_subpackage_says_its_job() -> None:
    for init in PACKAGE.rglob("__init__.py"):
        tree = ast.parse(init.read_text())
        assert ast.get_docstring(tree), f"{init.relative_to(PACKAGE)} has no docstring saying its job"


def test_no_two_modules_share_a_name() -> None:
    names = Counter(path.stem for path in PACKAGE.rglob("*.py") if path.stem not in ("__init__", "__main__"))
    packages = {path.parent.name for path in PACKAGE.rglob("__init__.py")}
    assert not [name for name, count in names.items() if count > 1 or name in packages - {"velox"}]


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
