"""What every edge route shares: the Edge, its parameters, and answering from the user's owner.

A prediction is answered by the edge beside the worker that owns the user's partition (the
``owners`` topic says which): here from the local RocksDB state, or forwarded there. When no
answer can come within the latency objective (the owner unreachable or slow, the partition
recovering) the edge answers a default, marked ``"default": true`` with the reason, and counts
it: for a model, the active version's batch answer for the user, without their online updates.
"""

from __future__ import annotations

import asyncio
import hmac
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import msgspec
import numpy as np
from confluent_kafka import Producer
from prometheus_client import Counter, Histogram
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from velox.control import topics
from velox.control.owners import Owners
from velox.kafka import clients
from velox.model.top_k import top_k
from velox.model.version import ModelVersion
from velox.schemas import ids, partitioning, user_state
from velox.schemas.feedback import Feedback
from velox.schemas.ownership import Ownership
from velox.schemas.top_k_request import TopKRequest
from velox.serving import top_k_index
from velox.serving.batching import TopKBatcher
from velox.serving.cache import PredictionCache
from velox.serving.container_client import Containers
from velox.serving.models import Models
from velox.serving.monitor import Monitor
from velox.serving.selection import Selector
from velox.settings import Settings
from velox.state.reader import LocalState

MAX_BODY = 64 * 1024

LATENCY = Histogram("velox_edge_request_seconds", "Edge request latency.", ["route"],
                    buckets=(1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0))
ERRORS = Counter("velox_edge_errors", "Requests answered with an error status.", ["route", "status"])
FORWARDED = Counter("velox_edge_forwarded", "Requests forwarded to the edge of the user's owner.", ["route", "owner"])
DEFAULTS = Counter("velox_edge_default_answers", "Default answers given instead of the owner's.", ["route", "cause"])
FORWARDED_HEADER = "x-velox-forwarded-by"


class JSON(Response):
    """JSON encoded by msgspec: cheaper than the standard library's encoder (``bench/serve.py`` breaks a predict down)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return msgspec.json.encode(content)


class Edge:
    """What the routes share: settings, local state, model versions, partition owners and the producer."""

    def __init__(self, settings: Settings, state: LocalState, models: Models, owners: Owners, selector: Selector,
                 containers: Containers, producer: Producer, monitor: Monitor, ack_timeout: float = 5.0) -> None:
        self.settings, self.state, self.models, self.owners = settings, state, models, owners
        self.selector, self.containers, self.producer, self.ack_timeout = selector, containers, producer, ack_timeout
        self.monitor = monitor  # the dashboard's data, gathered off the request path
        self.predict_path = f"/v1/models/{settings.model}/predict"
        self.top_k_cache = PredictionCache("top_k", settings.cache_entries)
        self.batcher = TopKBatcher() if settings.batching else None
        self.feedback = Feedback(settings.implicit, settings.confidences)  # what observe accepts
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._deliver, name="velox-edge-deliveries", daemon=True)
        self._poller.start()

    def _deliver(self) -> None:
        """Serve the producer's delivery callbacks (observe's acknowledgements) as they come."""
        while not self._stop.is_set():
            self.producer.poll(0.05)

    @classmethod
    def open(cls, settings: Settings, slot: int = 0, metrics_folder: Path | None = None) -> Edge:
        """The edge's resources for one of its processes (``slot``; their metrics in ``metrics_folder``)."""
        topics.ensure(settings)  # the edge may start before any worker: it writes observations, follows item-corrections
        producer = clients.producer(settings)
        return cls(settings, LocalState(settings.data, settings.partitions, slot=slot), Models(settings),
                   Owners(settings), Selector(settings, producer, slot), Containers(settings), producer,
                   Monitor(settings, metrics_folder).start())

    def close(self) -> None:
        self._stop.set()
        self._poller.join(5)
        self.monitor.close()
        self.selector.close()
        self.containers.close()
        self.models.close()
        self.owners.close()
        self.state.close()


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    """One HTTP client per server (per event loop), for forwarding to other edges; the connections
    to container replicas, opened on this loop, are closed on it."""
    async with httpx.AsyncClient() as client:
        try:
            yield {"client": client}
        finally:
            app.state.edge.containers.disconnect()


def timed(name: str, endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    latency = LATENCY.labels(route=name)  # bound once: a labels() lookup per request costs microseconds

    async def route(request: Request) -> Response:
        started = time.perf_counter()
        try:
            response = await endpoint(request)
        except HTTPException as exc:
            ERRORS.labels(route=name, status=str(exc.status_code)).inc()
            raise
        finally:
            latency.observe(time.perf_counter() - started)
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


def query(request: Request) -> Mapping[str, str]:
    """The query parameters (the last of repeated ones). Plain ``a=1&b=2`` strings, all our
    routes see, are split directly: Starlette's general parser costs more (``bench/serve.py``)."""
    found = request.scope.get("velox.query")
    if found is None:
        found = plain_query(request.scope["query_string"])
        if found is None:
            found = request.query_params
        request.scope["velox.query"] = found
    return found


def plain_query(raw: bytes) -> dict[str, str] | None:
    """``a=1&b=2`` as a dict (the last of repeated names), split directly; None when the string
    needs decoding (``%`` or ``+``)."""
    if b"%" in raw or b"+" in raw:
        return None
    return dict(pair.partition("=")[::2] for pair in raw.decode("latin-1").split("&") if pair)


async def bounded_body(request: Request) -> bytes:
    """The request's body, refused (413) over ``MAX_BODY``."""
    if int(request.headers.get("content-length") or 0) > MAX_BODY:
        raise HTTPException(413, f"body over 64 KiB ({MAX_BODY} bytes)")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(413, f"body over 64 KiB ({MAX_BODY} bytes)")
    return body


def id_param(request: Request, name: str) -> int | str:
    """A user or item id from the query, as answers give it back (an integer id as an int)."""
    raw = query(request).get(name)
    if raw is None:
        raise HTTPException(400, f"query parameter {name!r} is required")
    return checked_id(name, ids.given(raw))


def checked_id(name: str, value: object) -> int | str:
    """``value`` if it is an id, else a 400 naming ``name`` and why."""
    if (why := ids.problem(value)) is not None:
        raise HTTPException(400, f"{name!r}: {why}")
    return value  # type: ignore[return-value]


class Weights(NamedTuple):
    version: ModelVersion  # the version whose θ goes with w
    w: np.ndarray
    known: bool
    seen: np.ndarray  # every item the user rated or interacted with
    identity: tuple[object, ...]  # changes whenever w or the item corrections do: the top-k cache's key


Answer = Callable[[Weights], Awaitable[dict[str, Any]]]


async def local_weights(edge: Edge, partition: int, user: int | str) -> Weights:
    """The user's weights on the version their record is on (loaded first, off the event loop,
    if the edge had let it go); the version's prior if no record."""
    stored = edge.state.get(partition, ids.key(user))
    if stored is None:
        return default_weights(edge, user)
    state = user_state.decode(stored)
    version, generation = edge.models.serving(state.version) or await edge.models.load(state.version)
    return Weights(version, state.w, True, state.seen, (state.version, generation, user, state.offset))


def placed(edge: Edge, user: int | str) -> tuple[int, Ownership | None, bool]:
    """The user's home partition, its owner now, and whether that owner is this edge's worker."""
    partition = partitioning.home(ids.key(user), edge.settings.partitions)
    owner = edge.owners.of(partition)
    return partition, owner, owner is not None and owner.worker == edge.settings.worker_id


async def answered_here(edge: Edge, partition: int, user: int | str, body: Answer) -> dict[str, Any]:
    """The answer of the user's owner, this edge: from their weights read here."""
    return {"default": False, **await body(await local_weights(edge, partition, user)),
            "served_by": edge.settings.worker_id}


def default_weights(edge: Edge, user: int | str) -> Weights:
    """The active version's own answer for the user: their trained vector, or the mean user."""
    version, generation = edge.models.served
    code = ids.code(user)
    return Weights(version, version.prior(code), version.knows_user(code), np.zeros(0, np.int64),
                   (version.id, generation, user))


async def answer(edge: Edge, request: Request, route: str, path: str, user: int | str, body: Answer,
                 fallback: Callable[[], Awaitable[dict[str, Any]]] | None = None, slo_ms: float | None = None) -> Response:
    """The answer of the edge beside the user's owner: computed here, forwarded (to ``path`` there), or
    ``fallback()`` (default: the active version's batch answer) when none can come within ``slo_ms``."""
    slo_ms = slo_ms or edge.settings.slo_ms
    partition, owner, here = placed(edge, user)
    if here:
        return JSON(await answered_here(edge, partition, user, body))
    if owner is None:
        cause, reason = "no_owner", f"partition {partition} has no owner yet (recovering or rebalancing)"
    elif FORWARDED_HEADER in request.headers:
        cause, reason = "misrouted", f"forwarded here, but partition {partition} belongs to {owner.worker}"
    else:
        client: httpx.AsyncClient = request.state.client
        try:
            forwarded = await asyncio.wait_for(client.request(
                request.method, f"{owner.edge}{path}", params=request.query_params.multi_items(),
                content=await request.body() if request.method == "POST" else None,
                headers={FORWARDED_HEADER: edge.settings.worker_id}), slo_ms / 1000)
        except (TimeoutError, httpx.HTTPError) as exc:
            cause = "unreachable"
            reason = f"{owner.worker} at {owner.edge} gave no answer within {slo_ms:g} ms ({type(exc).__name__})"
        else:
            FORWARDED.labels(route=route, owner=owner.worker).inc()
            return Response(forwarded.content, forwarded.status_code, media_type="application/json")
    DEFAULTS.labels(route=route, cause=cause).inc()
    answered = await (fallback() if fallback else body(default_weights(edge, user)))
    return JSON({**answered, "default": True, "reason": reason, "served_by": edge.settings.worker_id})


class TopKQuery(NamedTuple):
    k: int
    candidates: np.ndarray | None  # the candidates' codes
    exclude_seen: bool
    names: dict[int, str]  # the candidates' string ids by code, to answer them as given


def top_k_query(request: Request, body: TopKRequest | None = None) -> TopKQuery:
    """What a top-k asks, from the query (``GET``) or a JSON body (``POST``, whose candidates may be
    any ids: a comma-separated query parameter cannot carry ids that hold commas)."""
    if body is not None:
        raw_k, raw_candidates, exclude_seen = str(body.k), body.candidates, "true" if body.exclude_seen else "false"
    else:
        params = query(request)
        raw_k, exclude_seen = params.get("k", "10"), params.get("exclude_seen", "false")
        raw_candidates = candidate_params(request) if "candidates" in params else None
    if not raw_k.isdigit() or not 1 <= int(raw_k) <= 1000:
        raise HTTPException(400, f"query parameter 'k' must be an integer from 1 to 1000, got {raw_k!r}")
    if exclude_seen not in ("true", "false"):
        raise HTTPException(400, f"query parameter 'exclude_seen' must be true or false, got {exclude_seen!r}")
    candidates, names = None, {}
    if raw_candidates is not None:
        given = [checked_id("candidates", item) for item in raw_candidates]
        codes = [ids.code(item) for item in given]
        names = {code: item for code, item in zip(codes, given) if code < 0}  # type: ignore[misc]
        candidates = np.array(codes, np.int64)
    return TopKQuery(int(raw_k), candidates, exclude_seen == "true", names)


def candidate_params(request: Request) -> list[int | str]:
    """``candidates=a&candidates=b``: one id each; one ``candidates=1,2,3`` of integer ids is a list
    (the form integer ids always had)."""
    given = request.query_params.getlist("candidates")
    if len(given) == 1 and "," in given[0] and all(ids.number(part) is not None for part in given[0].split(",")):
        given = given[0].split(",")
    return [ids.given(item) for item in given]


async def best_items(edge: Edge, query: TopKQuery, weights: Weights, slo_ms: float | None = None) -> msgspec.Raw:
    """The top-k answer, its items with scores as encoded JSON: from the cache unless exploring
    (ε-greedy answers are drawn afresh); batched with concurrent requests when over the whole catalog.

    Encoded, because the garbage collector never walks bytes: a full cache of lists of dicts made
    each full collection a pause long enough to be top-k's p99 at half load (bench/serve.py).
    """
    exclude = weights.seen if query.exclude_seen and len(weights.seen) else None
    explore = edge.settings.epsilon > 0
    key = (*weights.identity, query.k, None if query.candidates is None else query.candidates.tobytes(),
           query.exclude_seen)
    if not explore and (cached := edge.top_k_cache.peek(key)) is not None:
        return cached
    if edge.batcher is not None and query.candidates is None and exclude is None and not explore:
        best = await edge.batcher.top_k(weights.version, weights.w, query.k, (slo_ms or edge.settings.slo_ms) / 1000)
    else:
        best = top_k(weights.version, weights.w, query.k, query.candidates, exclude, edge.settings.epsilon)
    top_k_index.count(weights.version, query.candidates is not None)
    version = weights.version
    named = (query.names.get(i) or version.id_of(i) for i in best.items)
    items = msgspec.Raw(msgspec.json.encode(
        [{"item": i, "score": s, "explored": e} for i, s, e in zip(named, best.scores, best.explored)]))
    if not explore:
        edge.top_k_cache.put(key, items)
    return items


async def acknowledged(edge: Edge, topic: str, key: bytes, value: bytes | None) -> tuple[int, int | None] | None:
    """Produce and wait for the broker's acknowledgement: (partition, offset), None if it did not come
    in time. The offset is None for a retry the broker had already written (librdkafka knows it was
    taken, not where), so a 202 may say ``"offset": null``."""
    loop = asyncio.get_running_loop()
    acked: asyncio.Future[tuple[int, int | None] | None] = loop.create_future()

    def on_delivery(error: object, message: Any) -> None:
        result = None if error is not None else (message.partition(), message.offset())
        loop.call_soon_threadsafe(lambda: acked.done() or acked.set_result(result))

    edge.producer.produce(topic, key=key, value=value, on_delivery=on_delivery)  # the edge's delivery thread runs the callback
    try:
        return await asyncio.wait_for(acked, edge.ack_timeout)
    except TimeoutError:
        return None


def authorize(edge: Edge, request: Request) -> None:
    """Admin calls: refused unless a token is set and the request carries it."""
    expected = edge.settings.admin_token
    if expected is None or not bears(request, expected):
        raise HTTPException(401, "admin calls need 'Authorization: Bearer <VELOX_ADMIN_TOKEN>'",
                            headers={"WWW-Authenticate": "Bearer"})


def authorize_observe(edge: Edge, request: Request) -> None:
    """Observe: open unless a token is set (then whoever reaches the edge needs it to write feedback)."""
    expected = edge.settings.observe_token
    if expected is not None and not bears(request, expected):
        raise HTTPException(401, "observe needs 'Authorization: Bearer <VELOX_OBSERVE_TOKEN>'",
                            headers={"WWW-Authenticate": "Bearer"})


def bears(request: Request, token: str) -> bool:
    """Whether the request carries ``Bearer <token>``, compared in constant time: how long the
    comparison takes says nothing of how much of a guess was right."""
    return hmac.compare_digest(request.headers.get("authorization", "").encode(), f"Bearer {token}".encode())
