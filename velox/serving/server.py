"""The edge as one ASGI app: the model routes, the application routes, health, metrics, OpenAPI.

``velox serve`` opens an ``Edge`` (the resources every route shares: ``velox.serving.edge``) and
runs ``create_app(edge)`` on uvicorn. Bad input never yields a 500: an unknown model is 404, a
malformed parameter 400 naming it, a body over 64 KiB 413, each with a JSON body
``{"error": ..., "detail": ...}`` (``edge.http_error``).
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from velox.control import app_registry
from velox.serving import application_routes, model_routes, openapi
from velox.serving.edge import Edge, http_error, lifespan


def create_app(edge: Edge, metrics_folder: Path | None = None) -> Starlette:
    """``metrics_folder``: where the edge's processes write their metrics, when it runs several
    (prometheus_client's multiprocess mode): ``/metrics`` adds them up."""
    routes = [
        *model_routes.routes(),
        *application_routes.routes(),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/openapi.json", openapi_json, include_in_schema=False),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error}, lifespan=lifespan)
    app.state.edge, app.state.metrics_folder = edge, metrics_folder
    return app


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready once a version is loaded and every partition has an owner that finished recovering it."""
    edge: Edge = request.app.state.edge
    owned = {p: edge.owners.of(p) for p in range(edge.settings.partitions)}
    ready = all(owned.values())
    local = [p for p, owner in owned.items() if owner is not None and owner.worker == edge.settings.worker_id]
    return JSONResponse({"ready": ready, "partitions": local, "version": edge.models.active.id,
                         "unowned": [p for p, owner in owned.items() if owner is None]},
                        status_code=200 if ready else 503)


async def openapi_json(request: Request) -> Response:
    edge: Edge = request.app.state.edge
    return JSONResponse(openapi.document(app_registry.servable(edge.settings, edge.containers.table.rows)))


async def metrics(request: Request) -> Response:
    """This process's metrics; when the edge runs several processes (``velox serve``
    gives them a folder of metric files), all of theirs added up."""
    registry, folder = REGISTRY, request.app.state.metrics_folder
    if folder is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, str(folder))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
