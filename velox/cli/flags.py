"""Which flags of a command are settings: each command names its own, nothing else becomes one.

A command's parser declares the flags it takes as settings with ``settings_flags``: a mapping
from the flag's ``dest`` to the ``Settings`` field it sets. ``settings_of`` builds the settings
from the ``VELOX_*`` variables and exactly those flags (plus the global ones), so a positional
argument or an unrelated flag of another command (``velox app link APP MODEL``'s model,
``velox app register --epsilon``) never sets a setting of the same name.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Mapping
from pathlib import Path

from velox.errors import ConfigError
from velox.settings import FEEDBACK, Settings

# Flags every command takes, before its name: velox --data D worker ...
GLOBAL = {"bootstrap": "bootstrap", "data": "data", "cache": "cache"}


def add_global(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (VELOX_BOOTSTRAP)")
    parser.add_argument("--data", type=Path, help="data directory (VELOX_DATA)")
    parser.add_argument("--cache", type=Path, help="jar cache directory (VELOX_CACHE)")


def settings_flags(command: argparse.ArgumentParser, mapping: Mapping[str, str]) -> None:
    """Declare which of ``command``'s flags (by ``dest``) set which setting."""
    command.set_defaults(settings_flags=dict(mapping))


EDGE = {"edge_host": "edge_host", "edge_port": "edge_port", "edge_processes": "edge_processes",
        "worker_id": "worker_id", "tls_cert": "tls_cert", "tls_key": "tls_key"}


def add_edge(command: argparse.ArgumentParser) -> dict[str, str]:
    """The edge's flags (``serve`` and ``up``); returns their mapping to settings."""
    command.add_argument("--host", dest="edge_host", help="the edge's address (VELOX_EDGE_HOST, default 127.0.0.1)")
    command.add_argument("--port", dest="edge_port", type=int, help="the edge's port (VELOX_EDGE_PORT, default 8000)")
    command.add_argument("--processes", dest="edge_processes", type=int,
                         help="the edge's processes, on one port (VELOX_EDGE_PROCESSES, default one per core)")
    command.add_argument("--worker-id", dest="worker_id", help="the worker beside this edge (VELOX_WORKER_ID)")
    command.add_argument("--tls-cert", dest="tls_cert", type=Path,
                         help="serve HTTPS with this PEM certificate (VELOX_TLS_CERT)")
    command.add_argument("--tls-key", dest="tls_key", type=Path,
                         help="the certificate's PEM private key (VELOX_TLS_KEY)")
    return EDGE


def add_feedback(command: argparse.ArgumentParser) -> dict[str, str]:
    """``--feedback`` (the commands that start a worker, an edge or a retrain); returns its mapping."""
    command.add_argument("--feedback", choices=FEEDBACK,
                         help="learn from scores (explicit, the default) or kinds of interaction (implicit) "
                              "(VELOX_FEEDBACK)")
    return {"feedback": "feedback"}


def settings_of(args: argparse.Namespace) -> Settings:
    """The settings of ``VELOX_*`` variables, overridden by the global flags and the command's own."""
    mapping = {**GLOBAL, **getattr(args, "settings_flags", {})}
    return Settings.from_env(**{field: getattr(args, dest, None) for dest, field in mapping.items()})


def one_blas_thread() -> contextlib.AbstractContextManager[object]:
    """Our matrix products are small (a top-k over a version's items at most): a second BLAS
    thread only spins against the broker and the other processes for the cores, and under load
    the top-k product then waits behind it (bench/serve.py measures top-k's p99)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, "blas")


def output_file(what: str, path: Path) -> Path:
    """``path``, if its folder exists: said before a command's work, not after it."""
    if not path.parent.is_dir():
        raise ConfigError(f"{what} {path}: there is no folder {path.parent}")
    return path
