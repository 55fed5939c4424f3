"""``velox serve``: the edge (predict, top-k, observe, apps, admin) beside a worker."""

from __future__ import annotations

import argparse

from velox.cli.flags import add_edge, add_feedback, one_blas_thread, settings_flags
from velox.settings import Settings


def add(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="run the edge (predict, top-k, observe) beside a worker")
    settings_flags(serve, {**add_edge(serve), **add_feedback(serve)})
    serve.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from velox.serving.edge import Edge
    from velox.serving.server import create_app

    edge = Edge.open(settings)
    try:
        with one_blas_thread():
            uvicorn.run(create_app(edge), host=settings.edge_host, port=settings.edge_port, log_level="info",
                        access_log=settings.access_log, ssl_certfile=settings.tls_cert, ssl_keyfile=settings.tls_key)
    finally:
        edge.close()
    return 0
