"""``velox serve``: the edge (predict, top-k, observe, apps, admin) beside a worker.

With more than one process (``--processes``, ``VELOX_EDGE_PROCESSES``; default one per core),
this process supervises them: each is ``velox serve --slot N``, which binds the same port with
``SO_REUSEPORT`` (the kernel spreads the connections across them), reads the worker's tables
through secondary instances of its own and keeps its own caches; each is started again if it
dies. Their Prometheus metrics go to files in one folder (prometheus_client's multiprocess
mode), and ``/metrics`` of any of them adds them up.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
from pathlib import Path

from velox.cli.flags import add_edge, add_feedback, one_blas_thread, settings_flags
from velox.settings import Settings

METRICS_FOLDER = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client reads it when imported


def add(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="run the edge (predict, top-k, observe) beside a worker")
    settings_flags(serve, {**add_edge(serve), **add_feedback(serve)})
    serve.add_argument("--slot", type=int, help=argparse.SUPPRESS)  # one of the edge's processes: what --processes starts
    serve.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    slot = getattr(args, "slot", None)
    if slot is None and settings.edge_process_count() > 1:
        return supervise(settings)
    return serve(settings, slot)


def supervise(settings: Settings) -> int:
    """The edge's processes, started again when one dies; their metrics in one folder."""
    from prometheus_client import multiprocess

    from velox import processes

    held = shared_port(settings)  # kept while the processes come and go (and port 0 made one port for all)
    settings = settings.replace(edge_port=held.getsockname()[1])
    metrics = metrics_folder(settings)
    shutil.rmtree(metrics, ignore_errors=True)  # a folder of processes gone: their counts would be added in
    metrics.mkdir(parents=True)

    def start(slot: int) -> subprocess.Popen[bytes]:
        return processes.spawn(settings, settings.data / "edge" / f"process-{slot}.log", "serve", "--slot", str(slot),
                               env={METRICS_FOLDER: str(metrics)})

    try:
        processes.supervise(f"edge on {settings.edge_url}, process", start, settings.edge_process_count(),
                            died=lambda pid: multiprocess.mark_process_dead(pid, str(metrics)))
    finally:
        held.close()
    return 0


def serve(settings: Settings, slot: int | None) -> int:
    """One process of the edge: all of it, or ``slot`` of several on a port they share."""
    import uvicorn

    from velox.serving.edge import Edge
    from velox.serving.server import create_app

    edge = Edge.open(settings, slot or 0, None if slot is None else metrics_folder(settings))
    config = uvicorn.Config(create_app(edge), host=settings.edge_host, port=settings.edge_port, log_level="info",
                            access_log=settings.access_log, ssl_certfile=settings.tls_cert,
                            ssl_keyfile=settings.tls_key, headers=[("x-velox-process", str(slot or 0))])
    try:
        with one_blas_thread():
            uvicorn.Server(config).run(sockets=None if slot is None else [shared_port(settings)])
    except KeyboardInterrupt:  # Ctrl-C: the server has shut down cleanly (what uvicorn.run swallows too)
        pass
    finally:
        edge.close()
    return 0


def metrics_folder(settings: Settings) -> Path:
    """Where the edge's processes write their metrics (``METRICS_FOLDER`` in their environment)."""
    return settings.data / "edge" / "metrics"


def shared_port(settings: Settings) -> socket.socket:
    """The edge's port, bound with SO_REUSEPORT: every process of the edge binds it."""
    family = socket.AF_INET6 if ":" in settings.edge_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((settings.edge_host, settings.edge_port))
    sock.set_inheritable(False)
    os.set_blocking(sock.fileno(), False)
    return sock
