"""The edge: predictions from local state, observations to Kafka. Starlette, JSON in and out.

A prediction is answered by the edge beside the worker that owns the user's partition (the
``owners`` topic says which): here from the local RocksDB state, or forwarded there. When no
answer can come within the model's latency objective (the owner unreachable or slow, the
partition recovering) the edge answers the model's default, marked ``"default": true`` with
the reason, and counts it: the active version's batch answer for the user, without their
online updates.

Bad input never yields a 500: an unknown model is 404, a malformed parameter 400 naming it,
a body over 64 KiB 413, each with a JSON body ``{"error": ..., "detail": ...}``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, NamedTuple
from urllib.parse import urlencode

import httpx
import msgspec
import numpy as np
from confluent_kafka import Producer
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from velox import kafka, retrain_requests, versions
from velox.errors import InvalidObservation, UnknownVersion
from velox.model.store import ModelStore
from velox.model.top_k import top_k
from velox.model.version import ModelVersion
from velox.owners import Owners
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
FORWARDED = Counter("velox_edge_forwarded", "Requests forwarded to the edge of the user's owner.", ["route", "owner"])
DEFAULTS = Counter("velox_edge_default_answers", "Default answers given instead of the owner's.", ["route", "cause"])
FORWARDED_HEADER = "x-velox-forwarded-by"


class JSON(Response):
    """JSON encoded by msgspec: a third of the cost of the standard library's encoder on a predict answer."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return msgspec.json.encode(content)


class Edge:
    """What the routes share: settings, local state, model versions, partition owners and the producer."""

    def __init__(self, settings: Settings, state: LocalState, models: Models, owners: Owners, producer: Producer,
                 ack_timeout: float = 5.0) -> None:
        self.settings, self.state, self.models, self.owners, self.producer = settings, state, models, owners, producer
        self.ack_timeout = ack_timeout

    @classmethod
    def open(cls, settings: Settings) -> Edge:
        return cls(settings, LocalState(settings.data, settings.partitions), Models(settings), Owners(settings),
                   kafka.producer(settings))

    def close(self) -> None:
        self.models.close()
        self.owners.close()
        self.state.close()


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    """One HTTP client per server (per event loop), for forwarding to other edges."""
    async with httpx.AsyncClient() as client:
        yield {"client": client}


def create_app(edge: Edge) -> Starlette:
    routes = [
        Route("/v1/models", timed("models", list_models)),
        Route("/v1/models/{model}/predict", timed("predict", predict)),
        Route("/v1/models/{model}/top_k", timed("top_k", top_k_route)),
        Route("/v1/models/{model}/observe", timed("observe", observe), methods=["POST"]),
        Route("/v1/models/{model}/versions", timed("versions", list_versions)),
        Route("/v1/models/{model}/versions/{version}/activate", timed("activate", activate), methods=["POST"]),
        Route("/v1/models/{model}/retrain", timed("retrain", retrain), methods=["POST"]),
        # The Velox paper's own paths, as thin aliases.
        Route("/velox/{model}/predict", timed("predict", renamed(predict, userid="user"))),
        Route("/velox/{model}/predict_top_k", timed("top_k", renamed(top_k_route, userid="user"))),
        Route("/velox/{model}/observe", timed("observe", velox_observe), methods=["POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/openapi.json", openapi_json, include_in_schema=False),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error}, lifespan=lifespan)
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


class Weights(NamedTuple):
    version: ModelVersion  # the version whose θ goes with w
    w: np.ndarray
    known: bool
    seen: np.ndarray  # items the user rated (most recent 1,000)


Answer = Callable[[Weights], dict[str, Any]]


def local_weights(edge: Edge, partition: int, user: int) -> Weights:
    """The user's weights on the version their record is on; the version's prior if no record."""
    stored = edge.state.get(partition, str(user).encode())
    if stored is None:
        return default_weights(edge, user)
    state = user_state.decode(stored)
    return Weights(edge.models.version_of(state.version), state.w, True, state.seen)


def default_weights(edge: Edge, user: int) -> Weights:
    """The active version's own answer for the user: their trained vector, or the mean user."""
    version = edge.models.active
    return Weights(version, version.prior(user), version.knows_user(user), np.zeros(0, np.int64))


async def answer(edge: Edge, request: Request, route: str, user: int, body: Answer) -> Response:
    """The answer of the edge beside the user's owner: computed here, forwarded, or the default in time."""
    partition = kafka.partition_for(str(user).encode(), edge.settings.partitions)
    owner = edge.owners.of(partition)
    if owner is not None and owner.worker == edge.settings.worker_id:
        return JSON({**body(local_weights(edge, partition, user)), "default": False, "served_by": owner.worker})
    if owner is None:
        cause, reason = "no_owner", f"partition {partition} has no owner yet (recovering or rebalancing)"
    elif FORWARDED_HEADER in request.headers:
        cause, reason = "misrouted", f"forwarded here, but partition {partition} belongs to {owner.worker}"
    else:
        slo = edge.settings.slo_ms / 1000
        client: httpx.AsyncClient = request.state.client
        try:
            forwarded = await asyncio.wait_for(client.get(
                f"{owner.edge}/v1/models/{edge.settings.model}/{route}", params=request.query_params.multi_items(),
                headers={FORWARDED_HEADER: edge.settings.worker_id}), slo)
        except (httpx.HTTPError, asyncio.TimeoutError) as exc:
            cause = "unreachable"
            reason = f"{owner.worker} at {owner.edge} gave no answer within {edge.settings.slo_ms:g} ms ({type(exc).__name__})"
        else:
            FORWARDED.labels(route=route, owner=owner.worker).inc()
            return Response(forwarded.content, forwarded.status_code, media_type="application/json")
    DEFAULTS.labels(route=route, cause=cause).inc()
    return JSON({**body(default_weights(edge, user)), "default": True, "reason": reason,
                         "served_by": edge.settings.worker_id})


async def list_models(request: Request) -> Response:
    edge = edge_of(request)
    active = edge.models.active
    return JSONResponse({"models": [{"name": edge.settings.model, "version": active.id, "d": active.d,
                                     "items": len(active.item_ids), "slo_ms": edge.settings.slo_ms,
                                     "epsilon": edge.settings.epsilon}]})


async def predict(request: Request) -> Response:
    edge = edge_of(request)
    user, item = id_param(request, "user"), id_param(request, "item")

    def body(weights: Weights) -> dict[str, Any]:
        version = weights.version
        return {"user": user, "item": item, "score": version.score(weights.w, item), "version": version.id,
                "known_user": weights.known, "known_item": version.knows_item(item)}

    return await answer(edge, request, "predict", user, body)


async def top_k_route(request: Request) -> Response:
    edge = edge_of(request)
    user = id_param(request, "user")
    raw_k = request.query_params.get("k", "10")
    if not raw_k.isdigit() or not 1 <= int(raw_k) <= 1000:
        raise HTTPException(400, f"query parameter 'k' must be an integer from 1 to 1000, got {raw_k!r}")
    candidates = None
    if "candidates" in request.query_params:
        try:
            candidates = np.array([int(c) for c in request.query_params["candidates"].split(",") if c.strip()], np.int64)
        except (ValueError, OverflowError):
            raise HTTPException(400, "query parameter 'candidates' must be comma-separated integer ids") from None
    exclude_seen = request.query_params.get("exclude_seen", "false")
    if exclude_seen not in ("true", "false"):
        raise HTTPException(400, f"query parameter 'exclude_seen' must be true or false, got {exclude_seen!r}")

    def body(weights: Weights) -> dict[str, Any]:
        exclude = weights.seen if exclude_seen == "true" else None
        best = top_k(weights.version, weights.w, int(raw_k), candidates, exclude, edge.settings.epsilon)
        return {"user": user, "version": weights.version.id, "known_user": weights.known,
                "items": [{"item": i, "score": s, "explored": e}
                          for i, s, e in zip(best.items, best.scores, best.explored)]}

    return await answer(edge, request, "top_k", user, body)


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
    authorize(edge, request)
    version = request.path_params["version"]
    try:
        activation = await asyncio.to_thread(versions.activate, edge.settings, version, "activated through the edge")
    except UnknownVersion as exc:
        raise HTTPException(404, str(exc)) from None
    return JSONResponse({"active": activation.version.id, "activated_at": activation.activated_at})


async def retrain(request: Request) -> Response:
    """Admin: ask the retrain controller (``velox retrain --watch``) for a run; 202 once the request is logged."""
    edge = edge_of(request)
    authorize(edge, request)
    reason = request.query_params.get("reason", "requested through the edge")
    try:
        request_id = await asyncio.to_thread(retrain_requests.send, edge.settings, reason)
    except TimeoutError as exc:
        return JSONResponse({"error": 503, "detail": str(exc)}, status_code=503, headers={"Retry-After": "1"})
    return JSONResponse({"status": "requested", "request": request_id, "reason": reason}, status_code=202)


def authorize(edge: Edge, request: Request) -> None:
    expected = edge.settings.admin_token
    if expected is None or request.headers.get("authorization") != f"Bearer {expected}":
        raise HTTPException(401, "admin calls need 'Authorization: Bearer <VELOX_ADMIN_TOKEN>'")


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
    return JSONResponse(openapi.document())


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
