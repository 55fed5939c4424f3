"""``/dashboard``: live plots of the system, read-only, drawn in the browser by a script that ships
with the package (no CDN, no font), refreshed by polling ``/dashboard/data``.

The data is what the edge's ``Monitor`` (``velox.serving.monitor``) gathered in the background,
so a look at the dashboard costs the request path nothing. With an admin token set, the page and
its data need it: ``Authorization: Bearer <token>``, or ``?token=`` in the page's address, which
the page then sends with each poll.
"""

from __future__ import annotations

import hmac
from importlib import resources

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from velox.serving.edge import JSON, Edge, bears

STATIC = resources.files("velox.serving") / "static"


def routes() -> list[Route]:
    return [
        Route("/dashboard", page, include_in_schema=False),
        Route("/dashboard/data", data, include_in_schema=False),
        Route("/dashboard/plots.js", script, include_in_schema=False),
    ]


def authorize_view(edge: Edge, request: Request) -> None:
    """Open without an admin token; with one, the request must carry it (header or ``token`` parameter)."""
    expected = edge.settings.admin_token
    if expected is None or bears(request, expected):
        return
    if hmac.compare_digest(request.query_params.get("token", "").encode(), expected.encode()):
        return
    raise HTTPException(401, "the dashboard needs the admin token: 'Authorization: Bearer <VELOX_ADMIN_TOKEN>' "
                             "or /dashboard?token=<VELOX_ADMIN_TOKEN>", headers={"WWW-Authenticate": "Bearer"})


async def page(request: Request) -> Response:
    edge: Edge = request.app.state.edge
    authorize_view(edge, request)
    return Response((STATIC / "dashboard.html").read_bytes(), media_type="text/html; charset=utf-8",
                    headers={"Cache-Control": "no-store"})


async def data(request: Request) -> Response:
    edge: Edge = request.app.state.edge
    authorize_view(edge, request)
    return JSON({"model": edge.settings.model, "worker": edge.settings.worker_id, **edge.monitor.snapshot()},
                headers={"Cache-Control": "no-store"})


async def script(request: Request) -> Response:
    """The drawing code: no data in it, so served without the token."""
    return Response((STATIC / "plots.js").read_bytes(), media_type="text/javascript; charset=utf-8")
