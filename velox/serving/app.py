"""The edge: predictions from local state, observations to Kafka. Starlette, JSON in and out.

Bad input never yields a 500: an unknown model is 404, a malformed parameter 400 naming it,
a body over 64 KiB 413, each with a JSON body ``{"error": ..., "detail": ...}``.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlencode
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import numpy as np
from confluent_kafka import Producer
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from velox import versions
from velox.errors import InvalidObservation, UnknownVersion
from velox.model.store import ModelStore
from velox.model.top_k import top_k
from velox.schemas import observation, user_state
from velox.serving import openapi
from velox.serving.models import Models
from velox.serving.state import LocalState
from velox.settings import Settings

MAX_BODY = 64 * 1024
MAX_ID = 2**63 - 1

LATENCY = Histogram("velox_edge_request_seconds", "Edge request latency.", ["route"],
                    buckets=(1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0))
ERRORS = Counter("velox_edge_errors", "Requests answered with an error status.", ["route", "status"])


class Edge:
    """What the routes share: settings, local state, model versions and the producer."""

    def __init__(self, settings: Settings, state: LocalState, models: Models, producer: Producer,
                 ack_timeout: float = 5.0) -> None:
        self.settings, self.state, self.models, self.producer = settings, state, models, producer
        self.ack_timeout = ack_timeout


def create_app(edge: Edge) -> Starlette:
    routes = [
        Route("/v1/models", timed("models", list_models)),
        Route("/v1/models/{model}/predict", timed("predict", predict)),
        Route("/v1/models/{model}/top_k", timed("top_k", top_k_route)),
        Route("/v1/models/{model}/observe", timed("observe", observe), methods=["POST"]),
        Route("/v1/models/{model}/versions", timed("versions", list_versions)),
        Route("/v1/models/{model}/versions/{version}/activate", timed("activate", activate), methods=["POST"]),
        # The Velox paper's own paths, as thin aliases.
        Route("/velox/{model}/predict", timed("predict", renamed(predict, userid="user"))),
        Route("/velox/{model}/predict_top_k", timed("top_k", renamed(top_k_route, userid="user"))),
        Route("/velox/{model}/observe", timed("observe", velox_observe), methods=["POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/openapi.json", openapi_json, include_in_schema=False),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.state.edge = edge
    return app


def timed(name: str, endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def route(request: Request) -> Response:
        started = time.perf_counter()
        try:
            response = await endpoint(request)
        except HTTPException as exc:
            ERRORS.labels(route=name, status=str(exc.status_code)).inc()
            raise
        finally:
            LATENCY.labels(route=name).observe(time.perf_counter() - started)
        return response

    return route


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.status_code, "detail": exc.detail}, status_code=exc.status_code,
                        headers=exc.headers)


def edge_of(request: Request) -> Edge:
    edge: Edge = request.app.state.edge
    if request.path_params.get("model", edge.settings.model) != edge.settings.model:
        raise HTTPException(404, f"no model {request.path_params['model']!r}; this edge serves {edge.settings.model!r}")
    return edge


def id_param(request: Request, name: str) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        raise HTTPException(400, f"query parameter {name!r} is required")
    try:
        value = int(raw)
    except ValueError:
        raise HTTPException(400, f"query parameter {name!r} must be an integer id, got {raw!r}") from None
    if not 0 <= value <= MAX_ID:
        raise HTTPException(400, f"query parameter {name!r} must be between 0 and {MAX_ID}, got {value}")
    return value


def user_weights(edge: Edge, user: int) -> tuple[Any, Any, bool]:
    """(version, w, known): the user's weights on the version their record is on; the prior if no record."""
    stored = edge.state.get(str(user).encode())
    if stored is None:
        version = edge.models.active
        return version, version.prior(user), version.knows_user(user)
    state = user_state.decode(stored)
    return edge.models.version_of(state.version), state.w, True


async def list_models(request: Request) -> Response:
    edge = edge_of(request)
    active = edge.models.active
    return JSONResponse({"models": [{"name": edge.settings.model, "version": active.id, "d": active.d,
                                     "items": len(active.item_ids)}]})


async def predict(request: Request) -> Response:
    edge = edge_of(request)
    user, item = id_param(request, "user"), id_param(request, "item")
    version, w, known = user_weights(edge, user)
    return JSONResponse({"user": user, "item": item, "score": version.score(w, item), "version": version.id,
                         "known_user": known, "known_item": version.knows_item(item)})


async def top_k_route(request: Request) -> Response:
    edge = edge_of(request)
    user = id_param(request, "user")
    raw_k = request.query_params.get("k", "10")
    if not raw_k.isdigit() or not 1 <= int(raw_k) <= 1000:
        raise HTTPException(400, f"query parameter 'k' must be an integer from 1 to 1000, got {raw_k!r}")
    candidates = None
    if "candidates" in request.query_params:
        try:
            candidates = [int(c) for c in request.query_params["candidates"].split(",") if c.strip()]
        except ValueError:
            raise HTTPException(400, "query parameter 'candidates' must be comma-separated integer ids") from None
    version, w, known = user_weights(edge, user)
    best = top_k(version, w, int(raw_k), None if candidates is None else np.array(candidates, np.int64))
    return JSONResponse({
        "user": user, "version": version.id, "known_user": known,
        "items": [{"item": i, "score": s, "explored": e} for i, s, e in zip(best.items, best.scores, best.explored)],
    })


async def observe(request: Request) -> Response:
    edge = edge_of(request)
    if int(request.headers.get("content-length") or 0) > MAX_BODY:
        raise HTTPException(413, f"body over 64 KiB ({MAX_BODY} bytes)")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(413, f"body over 64 KiB ({MAX_BODY} bytes)")
    return await accept(edge, body)


async def accept(edge: Edge, body: bytes) -> Response:
    """Validate an observation body, produce it, answer 202 once the broker acknowledged it."""
    try:
        fields = msgspec.json.decode(body) if body else None
        if not isinstance(fields, dict):
            raise InvalidObservation("", "the body must be a JSON object")
        fields.setdefault("time", time.time())
        seen = observation.decode(msgspec.json.encode(fields))
    except (msgspec.DecodeError, InvalidObservation) as exc:
        raise HTTPException(400, f"bad observation: {exc}") from None
    delivered = await send(edge, seen)
    if delivered is None:
        return JSONResponse({"error": 503, "detail": "Kafka did not acknowledge the observation in time"},
                            status_code=503, headers={"Retry-After": "1"})
    return JSONResponse({"status": "accepted", "partition": delivered[0], "offset": delivered[1]}, status_code=202)


async def send(edge: Edge, seen: observation.Observation) -> tuple[int, int] | None:
    """Produce and wait for the broker's acknowledgement; None if it did not come in time."""
    loop = asyncio.get_running_loop()
    acked: asyncio.Future[tuple[int, int] | None] = loop.create_future()

    def on_delivery(error: object, message: Any) -> None:
        result = None if error is not None else (message.partition(), message.offset())
        loop.call_soon_threadsafe(lambda: acked.done() or acked.set_result(result))

    edge.producer.produce(edge.settings.topic("observations"), key=seen.key, value=observation.encode(seen),
                          on_delivery=on_delivery)
    await asyncio.to_thread(edge.producer.flush, edge.ack_timeout)
    try:
        return await asyncio.wait_for(acked, 0.1)
    except asyncio.TimeoutError:
        return None


def renamed(endpoint: Callable[[Request], Awaitable[Response]], **names: str) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint with query parameters renamed (``userid`` → ``user``) before it reads them."""

    async def route(request: Request) -> Response:
        params = [(names.get(key, key), value) for key, value in request.query_params.multi_items()]
        request.scope["query_string"] = urlencode(params).encode()
        return await endpoint(Request(request.scope, request.receive))

    return route


async def velox_observe(request: Request) -> Response:
    """``POST /velox/{model}/observe?userid=&item=&score=``: the paper's form of observe."""
    edge = edge_of(request)
    fields = {"user": id_param(request, "userid"), "item": id_param(request, "item")}
    try:
        fields["score"] = float(request.query_params.get("score", ""))
    except ValueError:
        raise HTTPException(400, "query parameter 'score' must be a number") from None
    return await accept(edge, msgspec.json.encode(fields))


async def list_versions(request: Request) -> Response:
    edge = edge_of(request)
    active = edge.models.active.id
    return JSONResponse({"active": active, "versions": [
        {**msgspec.to_builtins(info), "active": info.id == active} for info in ModelStore(edge.settings.model_store).list()
    ]})


async def activate(request: Request) -> Response:
    """Admin: make a stored version the active one (a rollback when it is older)."""
    edge = edge_of(request)
    expected = edge.settings.admin_token
    if expected is None or request.headers.get("authorization") != f"Bearer {expected}":
        raise HTTPException(401, "admin calls need 'Authorization: Bearer <VELOX_ADMIN_TOKEN>'")
    version = request.path_params["version"]
    try:
        activation = await asyncio.to_thread(versions.activate, edge.settings, version, "activated through the edge")
    except UnknownVersion as exc:
        raise HTTPException(404, str(exc)) from None
    return JSONResponse({"active": activation.version.id, "activated_at": activation.activated_at})


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    edge: Edge = request.app.state.edge
    held = [p for p in range(edge.settings.partitions) if edge.state.holds(p)]
    ready = bool(held)
    return JSONResponse({"ready": ready, "partitions": held, "version": edge.models.active.id},
                        status_code=200 if ready else 503)


async def openapi_json(request: Request) -> Response:
    return JSONResponse(openapi.document())


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
