"""Predict's common case answered before the framework: the request the edge gets most, for a user
it owns, costs little beyond reading their record, so Starlette's share of it (the middleware's
exception handling, routing, request and response objects) was most of what set the edge apart
from a bare app (issue 39; ``bench/serve.py`` times both).

Only a ``GET`` of this edge's model's predict, with a plain query (no ``%`` or ``+``) naming a
valid user and item, for a user whose partition this edge owns, is answered here, with the very
answer the route gives (``model_routes.prediction``, ``edge.answered_here``). Anything else
(a bad or missing id, a user owned elsewhere or by no one, another route) goes on to the routes,
which answer it as before: the 400 naming what was wrong, the forward, the default.
"""

from __future__ import annotations

import time

import msgspec
from starlette.types import ASGIApp, Receive, Scope, Send

from velox.schemas import ids
from velox.serving.edge import LATENCY, Edge, answered_here, placed, plain_query
from velox.serving.model_routes import prediction

HEADERS = [(b"content-type", b"application/json")]


class FastPredict:
    """ASGI middleware in front of the routes (``server.create_app``)."""

    def __init__(self, app: ASGIApp, edge: Edge) -> None:
        self.app, self.edge = app, edge
        self.latency = LATENCY.labels(route="predict")  # the route's own histogram: one count per request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == self.edge.predict_path:
            started = time.perf_counter()
            body = await answered(self.edge, scope["query_string"])
            if body is not None:
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-length", str(len(body)).encode()), *HEADERS]})
                await send({"type": "http.response.body", "body": body})
                self.latency.observe(time.perf_counter() - started)
                return
        await self.app(scope, receive, send)


async def answered(edge: Edge, query_string: bytes) -> bytes | None:
    """The predict answer's JSON, if this edge owns the user and the query is plain and valid; else None."""
    params = plain_query(query_string)
    if params is None or "user" not in params or "item" not in params:
        return None
    user, item = ids.given(params["user"]), ids.given(params["item"])
    if ids.problem(user) is not None or ids.problem(item) is not None:
        return None
    partition, _, here = placed(edge, user)
    if not here:
        return None
    return msgspec.json.encode(await answered_here(edge, partition, user, prediction(edge, user, item)))
