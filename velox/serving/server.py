"""The edge as one ASGI app: the model routes, the application routes, health, metrics, the dashboard, OpenAPI.

``velox serve`` opens an ``Edge`` (the resources every route shares: ``velox.serving.edge``) and
runs ``create_app(edge)`` on uvicorn, predict's common case answered in front of the routes
(``velox.serving.fast_predict``). Bad input never yields a 500: an unknown model is 404, a
malformed parameter 400 naming it, a body over 64 KiB 413, each with a JSON body
``{"error": ..., "detail": ...}`` (``edge.http_error``).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from velox.control import app_registry
from velox.serving import (
    application_routes,
    dashboard,
    item_routes,
    model_routes,
    openapi,
)
from velox.serving.edge import Edge, http_error, lifespan
from velox.serving.fast_predict import FastPredict
from velox.serving.monitor import edge_metrics


def create_app(edge: Edge) -> Starlette:
    routes = [
        *model_routes.routes(),
        *application_routes.routes(),
        *item_routes.routes(),
        *dashboard.routes(),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/openapi.json", openapi_json, include_in_schema=False),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(FastPredict, edge=edge)], exception_handlers={HTTPException: http_error},
                    lifespan=lifespan)
    app.state.edge = edge
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
    """This process's metrics; those of all the edge's processes when it runs several."""
    return Response(generate_latest(edge_metrics(request.app.state.edge.monitor.metrics_folder)),
                    media_type=CONTENT_TYPE_LATEST)
