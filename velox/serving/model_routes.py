"""The edge's routes for the system's model: predictions from local state, observations to Kafka,
versions and admin; and the Velox paper's own paths as aliases."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from velox.control import retrain_requests, versions
from velox.errors import InvalidObservation, UnknownVersion
from velox.model.store import ModelStore
from velox.schemas import ids, observation, top_k_request
from velox.schemas.top_k_request import TopKRequest
from velox.serving.edge import (
    Answer,
    Edge,
    Weights,
    acknowledged,
    answer,
    authorize,
    authorize_observe,
    best_items,
    bounded_body,
    checked_id,
    edge_of,
    id_param,
    timed,
    top_k_query,
)


def routes() -> list[Route]:
    return [
        Route("/v1/models", timed("models", list_models)),
        Route("/v1/models/{model}/predict", timed("predict", predict)),
        Route("/v1/models/{model}/top_k", timed("top_k", top_k_route), methods=["GET", "POST"]),
        Route("/v1/models/{model}/observe", timed("observe", observe), methods=["POST"]),
        Route("/v1/models/{model}/versions", timed("versions", list_versions)),
        Route("/v1/models/{model}/versions/{version}/activate", timed("activate", activate), methods=["POST"]),
        Route("/v1/models/{model}/retrain", timed("retrain", retrain), methods=["POST"]),
        # The Velox paper's own paths, as thin aliases.
        Route("/velox/{model}/predict", timed("predict", renamed(predict, userid="user"))),
        Route("/velox/{model}/predict_top_k", timed("top_k", renamed(top_k_route, userid="user"))),
        Route("/velox/{model}/observe", timed("observe", velox_observe), methods=["POST"]),
    ]


async def list_models(request: Request) -> Response:
    edge = edge_of(request)
    active = edge.models.active
    return JSONResponse({"models": [{"name": edge.settings.model, "version": active.id, "d": active.d,
                                     "items": len(active.item_ids), "slo_ms": edge.settings.slo_ms,
                                     "epsilon": edge.settings.epsilon}]})


async def predict(request: Request) -> Response:
    edge = edge_of(request)
    user, item = id_param(request, "user"), id_param(request, "item")
    return await answer(edge, request, "predict", edge.predict_path, user, prediction(edge, user, item))


def prediction(edge: Edge, user: int | str, item: int | str) -> Answer:
    """Predict's answer from the user's weights (``velox.serving.fast_predict`` gives it too)."""

    code = ids.code(item)

    async def body(weights: Weights) -> dict[str, Any]:
        version = weights.version
        features = edge.models.features_of(version.id, code)
        return {"user": user, "item": item, "score": version.score(weights.w, code), "version": version.id,
                "known_user": weights.known, "known_item": features == "trained", "features": features}

    return body


async def top_k_route(request: Request) -> Response:
    """``GET`` with query parameters, or ``POST`` with a JSON body (candidates of any ids)."""
    edge = edge_of(request)
    asked = await top_k_body(request) if request.method == "POST" else None
    user = id_param(request, "user") if asked is None else checked_id("user", asked.user)
    query = top_k_query(request, asked)

    async def body(weights: Weights) -> dict[str, Any]:
        return {"user": user, "version": weights.version.id, "known_user": weights.known,
                "items": await best_items(edge, query, weights)}

    return await answer(edge, request, "top_k", f"/v1/models/{edge.settings.model}/top_k", user, body)


async def top_k_body(request: Request) -> TopKRequest:
    try:
        return top_k_request.decode(await bounded_body(request))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise HTTPException(400, f"bad top-k request: {exc}") from None


async def observe(request: Request) -> Response:
    edge = edge_of(request)
    authorize_observe(edge, request)
    return await accept(edge, await bounded_body(request))


async def accept(edge: Edge, body: bytes) -> Response:
    """Validate an observation body, produce it, answer 202 once the broker acknowledged it."""
    try:
        fields = msgspec.json.decode(body) if body else None
        if not isinstance(fields, dict):
            raise InvalidObservation("", "the body must be a JSON object")
        fields.setdefault("time", time.time())
        seen = observation.decode(msgspec.json.encode(fields))
        edge.feedback.target(seen)  # what this system cannot learn from is refused here, not dead-lettered
    except (msgspec.DecodeError, InvalidObservation) as exc:
        raise HTTPException(400, f"bad observation: {exc}") from None
    delivered = await acknowledged(edge, edge.settings.topic("observations"), seen.key, observation.encode(seen))
    if delivered is None:
        return JSONResponse({"error": 503, "detail": "Kafka did not acknowledge the observation in time"},
                            status_code=503, headers={"Retry-After": "1"})
    return JSONResponse({"status": "accepted", "partition": delivered[0], "offset": delivered[1]}, status_code=202)


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
    authorize_observe(edge, request)
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
    """Admin: make a stored version the active one (a rollback when it is older), pinned (``velox.control.pins``)."""
    edge = edge_of(request)
    authorize(edge, request)
    version = request.path_params["version"]
    try:
        activation = await asyncio.to_thread(versions.activate, edge.settings, version, "activated through the edge",
                                             by_hand=True)
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
