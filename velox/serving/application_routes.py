"""The edge's routes for applications (Clipper's word): several models behind one name, one chosen per request.

``GET /v1/apps/{app}/predict`` and ``/top_k`` are answered at the edge of the user's owner,
like a model's; the app's policy picks the model (``velox.serving.selection``), the answer says
which one answered, with the decision id and its propensity. When no model is linked, or no
answer can come within the app's latency objective, a predict answers the app's default output
and a top-k the most popular items.
A model container (``velox.serving.container_client``) answers predict, asked by ``GET`` or by ``POST``
with the request's context features; its failures answer the default, marked with the cause.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import numpy as np
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from velox.control import app_registry
from velox.errors import ConfigError, UnknownApp
from velox.schemas import application as app_schema
from velox.schemas import ids
from velox.schemas.application import App, PredictRequest
from velox.schemas.container_rpc import Input
from velox.serving.container_client import ContainerFailed
from velox.serving.edge import (
    DEFAULTS,
    JSON,
    Edge,
    Weights,
    answer,
    authorize,
    best_items,
    bounded_body,
    default_weights,
    id_param,
    timed,
    top_k_query,
)

CONTAINER_SHARE = 0.8  # of an app's latency objective, the most a container call may take


def routes() -> list[Route]:
    return [
        Route("/v1/apps", timed("apps", list_apps)),
        Route("/v1/apps/{app}", timed("app", app_route), methods=["GET", "PUT"]),
        Route("/v1/apps/{app}/models/{model}", timed("app_admin", link), methods=["POST", "DELETE"]),
        Route("/v1/apps/{app}/predict", timed("app_predict", predict), methods=["GET", "POST"]),
        Route("/v1/apps/{app}/top_k", timed("app_top_k", top_k_route)),
    ]


def app_of(request: Request) -> tuple[Edge, App]:
    edge: Edge = request.app.state.edge
    app = edge.selector.app(request.path_params["app"])
    if app is None:
        raise HTTPException(404, f"no app {request.path_params['app']!r}; register it with PUT /v1/apps/{{app}}")
    return edge, app


def describe(edge: Edge, app: App) -> dict[str, Any]:
    return {**msgspec.to_builtins(app), "probabilities": edge.selector.probabilities(app) if app.models else {}}


async def list_apps(request: Request) -> Response:
    edge: Edge = request.app.state.edge
    return JSON({"apps": [describe(edge, app) for app in edge.selector.apps.rows.values()]})


async def app_route(request: Request) -> Response:
    """GET: the app and its policy's current choice probabilities; PUT: register (admin)."""
    if request.method == "PUT":
        return await register(request)
    edge, app = app_of(request)
    return JSON(describe(edge, app))


async def register(request: Request) -> Response:
    """Admin: create or replace an app from a JSON body (``default_output`` required)."""
    edge: Edge = request.app.state.edge
    authorize(edge, request)
    try:
        fields = msgspec.json.decode(await request.body())
        if not isinstance(fields, dict):
            raise HTTPException(400, "the body must be a JSON object")
        app = msgspec.convert({**fields, "name": request.path_params["app"]}, App)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise HTTPException(400, f"bad app: {exc}") from None
    return await admin(edge, lambda: app_registry.register(edge.settings, app))


async def link(request: Request) -> Response:
    """Admin: link (POST) or unlink (DELETE) a model."""
    edge: Edge = request.app.state.edge
    authorize(edge, request)
    name, model = request.path_params["app"], request.path_params["model"]
    change = app_registry.link if request.method == "POST" else app_registry.unlink
    return await admin(edge, lambda: change(edge.settings, name, model))


async def admin(edge: Edge, change: Any) -> Response:
    """Apply an app change; answer once this edge follows it, so the next request sees it."""
    try:
        app = await asyncio.to_thread(change)
    except UnknownApp as exc:
        raise HTTPException(404, str(exc)) from None
    except ConfigError as exc:
        raise HTTPException(400, str(exc)) from None
    deadline = time.monotonic() + 5
    while edge.selector.app(app.name) != app and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return JSON(describe(edge, app))


def unserved(edge: Edge, route: str, model: str) -> str | None:
    """Why ``model`` cannot answer here (None: it can): neither the system's model, popularity nor
    a container (one whose replicas are gone answers its own cause, ``no_replica``). Linking
    refuses such a name; an app can still hold one, linked before the name was taken away."""
    if model in (edge.settings.model, app_registry.POPULARITY) or model in edge.containers:
        return None
    DEFAULTS.labels(route=route, cause="not_served").inc()
    return f"model {model!r} is not served here (served: {edge.settings.model}, {app_registry.POPULARITY} and containers)"


def chosen_weights(model: str, weights: Weights) -> Weights:
    """The weights the chosen model scores with: the user's, or none at all for popularity.

    Popularity's answers still depend on the user through ``exclude_seen``, so its cache
    identity is the user's, marked as popularity's."""
    if model == app_registry.POPULARITY:
        return weights._replace(w=np.zeros(weights.version.d, np.float32), known=False,
                                identity=(app_registry.POPULARITY, *weights.identity))
    return weights


async def asked(request: Request) -> PredictRequest:
    """What a predict asks: the query's user and item (GET), or a JSON body that may add context (POST)."""
    if request.method == "GET":
        return PredictRequest(id_param(request, "user"), id_param(request, "item"))
    try:
        return app_schema.decode_predict(await bounded_body(request))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise HTTPException(400, f"bad predict request: {exc}") from None


async def container_score(edge: Edge, app: App, model: str, asking: PredictRequest) -> dict[str, Any]:
    """A container's score, or the app's default marked with the cause (counted per model and cause).

    The container gets most of the app's objective: the rest is the edge's own time, so that even
    a default answer comes within it."""
    try:
        version, score = await edge.containers.score(
            model, Input(asking.user, asking.item, asking.context), CONTAINER_SHARE * app.slo_ms / 1000)
    except ContainerFailed as exc:
        return {"score": app.default_output, "version": None, "default": True, "cause": exc.cause,
                "reason": exc.reason}
    return {"score": score, "version": version}


async def predict(request: Request) -> Response:
    edge, app = app_of(request)
    asking = await asked(request)
    user, item = asking.user, asking.item
    if not app.models:
        return JSON({"app": app.name, "user": user, "item": item, "score": app.default_output, "default": True,
                     "reason": "no model is linked to this app"})

    async def body(weights: Weights) -> dict[str, Any]:
        model, propensity, sticky = edge.selector.decide(app, user)
        if not_served := unserved(edge, "app_predict", model):
            return {**await fallback(), "model": model, "default": True, "cause": "not_served",
                    "reason": not_served}
        if model in edge.containers:
            scored = await container_score(edge, app, model, asking)
        else:
            used = chosen_weights(model, weights)
            scored = {"score": used.version.score(used.w, ids.code(item)), "version": used.version.id}
        decision = edge.selector.record(app, user, model, propensity, sticky, {item: scored["score"]})
        return {"app": app.name, "user": user, "item": item, **scored, "model": model,
                "decision": decision.id, "propensity": propensity, "sticky": sticky}

    async def fallback() -> dict[str, Any]:
        return {"app": app.name, "user": user, "item": item, "score": app.default_output}

    return await answer(edge, request, "app_predict", f"/v1/apps/{app.name}/predict", user, body, fallback, app.slo_ms)


async def top_k_route(request: Request) -> Response:
    edge, app = app_of(request)
    user = id_param(request, "user")
    query = top_k_query(request)

    async def body(weights: Weights) -> dict[str, Any]:
        model, propensity, sticky = edge.selector.decide(app, user)
        if not_served := unserved(edge, "app_top_k", model):
            return {**await fallback(), "model": model, "default": True, "cause": "not_served",
                    "reason": not_served}
        if model in edge.containers:  # a container scores given inputs: a full-catalog ranking is not asked of it
            return {**await fallback(), "model": model, "default": True,
                    "reason": f"{model} is a container: containers answer predict, not top_k"}
        used = chosen_weights(model, weights)
        items = await best_items(edge, query, used, app.slo_ms)
        scores = {e["item"]: e["score"] for e in msgspec.json.decode(items)}  # the answer is cached encoded
        decision = edge.selector.record(app, user, model, propensity, sticky, scores)
        return {"app": app.name, "user": user, "model": model, "version": used.version.id, "items": items,
                "decision": decision.id, "propensity": propensity, "sticky": sticky}

    async def fallback() -> dict[str, Any]:  # the most popular items: needs no user state
        popular = chosen_weights(app_registry.POPULARITY, default_weights(edge, user))
        return {"app": app.name, "user": user, "items": await best_items(edge, query, popular, app.slo_ms)}

    if not app.models:
        return JSON({**await fallback(), "default": True, "reason": "no model is linked to this app"})
    return await answer(edge, request, "app_top_k", f"/v1/apps/{app.name}/top_k", user, body, fallback, app.slo_ms)
