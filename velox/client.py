"""Velox from your own Python code: ``Client`` and ``AsyncClient`` for the edge's HTTP API, and
``FeedbackProducer`` for feedback straight to Kafka.

    from velox.client import Client, FeedbackProducer

    with Client("http://127.0.0.1:8000") as velox:
        velox.predict(user=1, item=2).score
        [entry.item for entry in velox.top_k(user=1, k=10).items]
        velox.observe(user=1, item=2, score=5.0)

    with FeedbackProducer("127.0.0.1:9092") as feedback:
        feedback.send(user=1, item=2, score=5.0)

Each client keeps a pool of keep-alive connections (httpx). An answer of 4xx or 5xx raises
``ClientError`` with the edge's own message. ``FeedbackProducer`` encodes observations with the
system's schema and produces them with the client settings the system uses (the murmur2
partitioner, so each lands in its user's home partition without a hop: see
``velox.streams.moves``).
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx
import msgspec

from velox.errors import VeloxError
from velox.kafka import clients
from velox.schemas import observation
from velox.schemas.answers import (
    Accepted,
    Activated,
    AppPrediction,
    Id,
    ItemAttributes,
    Prediction,
    Problem,
    TopK,
    Versions,
)
from velox.schemas.observation import Observation
from velox.settings import Settings


class ClientError(VeloxError):
    """The edge answered with an error status; ``status`` and ``detail`` are its own."""

    def __init__(self, status: int, detail: str) -> None:
        self.status, self.detail = status, detail
        super().__init__(f"{status}: {detail}")


class Call(NamedTuple):
    """One request to the edge and the type of its answer: what the sync and async clients share."""

    method: str
    path: str
    params: dict[str, Any] | None
    body: dict[str, Any] | None
    answer: type[Any]
    headers: dict[str, str] | None = None


class Routes:
    """The edge's routes, for one model, as calls; admin calls carry the admin token, observe the
    observe token (the edge asks each for its own: ``VELOX_ADMIN_TOKEN``, ``VELOX_OBSERVE_TOKEN``)."""

    def __init__(self, model: str, admin_token: str | None = None, observe_token: str | None = None) -> None:
        self.model = f"/v1/models/{model}"
        self.admin, self.observing = _headers(admin_token), _headers(observe_token)

    def predict(self, user: Id, item: Id) -> Call:
        return Call("GET", f"{self.model}/predict", {"user": user, "item": item}, None, Prediction)

    def top_k(self, user: Id, k: int, exclude_seen: bool, candidates: list[Id] | None) -> Call:
        """A ``GET``; with candidates a ``POST`` of a JSON body, which carries ids of any text."""
        if candidates is not None:
            body = {"user": user, "k": k, "exclude_seen": exclude_seen, "candidates": list(candidates)}
            return Call("POST", f"{self.model}/top_k", None, body, TopK)
        params = {"user": user, "k": k, "exclude_seen": "true" if exclude_seen else "false"}
        return Call("GET", f"{self.model}/top_k", params, None, TopK)

    def observe(self, user: Id, item: Id, score: float | None, at: float | None, kind: str | None = None) -> Call:
        body = {"user": user, "item": item, **({"score": score} if score is not None else {}),
                **({"kind": kind} if kind is not None else {}), **({"time": at} if at is not None else {})}
        return Call("POST", f"{self.model}/observe", None, body, Accepted, self.observing)

    def app_predict(self, app: str, user: Id, item: Id) -> Call:
        return Call("GET", f"/v1/apps/{app}/predict", {"user": user, "item": item}, None, AppPrediction)

    def versions(self) -> Call:
        return Call("GET", f"{self.model}/versions", None, None, Versions)

    def activate(self, version: str) -> Call:
        return Call("POST", f"{self.model}/versions/{version}/activate", None, None, Activated, self.admin)

    def set_item(self, item: Id, attributes: dict[str, Any]) -> Call:
        return Call("POST", f"/v1/items/{quote(str(item), safe='')}", None, attributes, ItemAttributes, self.admin)

    def item(self, item: Id) -> Call:
        return Call("GET", f"/v1/items/{quote(str(item), safe='')}", None, None, ItemAttributes)


def decode(call: Call, response: httpx.Response) -> Any:
    """The typed answer, or ClientError with the edge's message."""
    if response.status_code >= 400:
        try:
            problem = msgspec.json.decode(response.content, type=Problem)
        except msgspec.DecodeError:
            raise ClientError(response.status_code, response.text or response.reason_phrase) from None
        raise ClientError(problem.error, problem.detail)
    return msgspec.json.decode(response.content, type=call.answer)


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


class Client:
    """The edge's API from synchronous code. ``admin_token``: for ``activate``; ``observe_token``: for
    ``observe``, where the edge requires one."""

    def __init__(self, url: str = "http://127.0.0.1:8000", admin_token: str | None = None,
                 observe_token: str | None = None, model: str = "default", timeout: float = 10.0) -> None:
        self.routes = Routes(model, admin_token, observe_token)
        self.http = httpx.Client(base_url=url, timeout=timeout)

    def _call(self, call: Call) -> Any:
        return decode(call, self.http.request(call.method, call.path, params=call.params, json=call.body,
                                              headers=call.headers))

    def predict(self, user: Id, item: Id) -> Prediction:
        return self._call(self.routes.predict(user, item))

    def top_k(self, user: Id, k: int = 10, exclude_seen: bool = False, candidates: list[Id] | None = None) -> TopK:
        return self._call(self.routes.top_k(user, k, exclude_seen, candidates))

    def observe(self, user: Id, item: Id, score: float | None = None, at: float | None = None,
                kind: str | None = None) -> Accepted:
        """A rating (``score``), or on an implicit system an interaction (``kind``: "click", ...)."""
        return self._call(self.routes.observe(user, item, score, at, kind))

    def app_predict(self, app: str, user: Id, item: Id) -> AppPrediction:
        return self._call(self.routes.app_predict(app, user, item))

    def versions(self) -> Versions:
        return self._call(self.routes.versions())

    def activate(self, version: str) -> Activated:
        return self._call(self.routes.activate(version))

    def set_item(self, item: Id, attributes: dict[str, Any]) -> ItemAttributes:
        """Describe an item (admin): strings, lists of strings and numbers (``velox.schemas.item_attributes``)."""
        return self._call(self.routes.set_item(item, attributes))

    def item(self, item: Id) -> ItemAttributes:
        """An item's attributes as the edge holds them."""
        return self._call(self.routes.item(item))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncClient:
    """The edge's API from asyncio code: the same methods as ``Client``, awaited."""

    def __init__(self, url: str = "http://127.0.0.1:8000", admin_token: str | None = None,
                 observe_token: str | None = None, model: str = "default", timeout: float = 10.0) -> None:
        self.routes = Routes(model, admin_token, observe_token)
        self.http = httpx.AsyncClient(base_url=url, timeout=timeout)

    async def _call(self, call: Call) -> Any:
        return decode(call, await self.http.request(call.method, call.path, params=call.params, json=call.body,
                                                    headers=call.headers))

    async def predict(self, user: Id, item: Id) -> Prediction:
        return await self._call(self.routes.predict(user, item))

    async def top_k(self, user: Id, k: int = 10, exclude_seen: bool = False,
                    candidates: list[Id] | None = None) -> TopK:
        return await self._call(self.routes.top_k(user, k, exclude_seen, candidates))

    async def observe(self, user: Id, item: Id, score: float | None = None, at: float | None = None,
                      kind: str | None = None) -> Accepted:
        return await self._call(self.routes.observe(user, item, score, at, kind))

    async def app_predict(self, app: str, user: Id, item: Id) -> AppPrediction:
        return await self._call(self.routes.app_predict(app, user, item))

    async def versions(self) -> Versions:
        return await self._call(self.routes.versions())

    async def activate(self, version: str) -> Activated:
        return await self._call(self.routes.activate(version))

    async def set_item(self, item: Id, attributes: dict[str, Any]) -> ItemAttributes:
        return await self._call(self.routes.set_item(item, attributes))

    async def item(self, item: Id) -> ItemAttributes:
        return await self._call(self.routes.item(item))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


class FeedbackProducer:
    """Observations to the ``observations`` topic, keyed and partitioned the way the system expects.

    ``namespace``: the system's topic prefix (``VELOX_NAMESPACE``); ``config``: more librdkafka
    settings (security, say), over ours. ``send`` does not wait; ``flush`` waits for every
    acknowledgement and raises if any observation was refused.
    """

    def __init__(self, bootstrap: str, namespace: str = "", **config: Any) -> None:
        self.settings = Settings(bootstrap=bootstrap, namespace=namespace)
        self.topic = self.settings.topic("observations")
        self.failures: list[str] = []
        self.producer = clients.producer(self.settings, **config)

    def send(self, user: Id, item: Id, score: float | None = None, at: float | None = None,
             context: dict[str, Any] | None = None, kind: str | None = None) -> None:
        """A rating (``score``), or on an implicit system an interaction (``kind``)."""
        seen = Observation(user=user, item=item, score=score, kind=kind, time=time.time() if at is None else at,
                           context=context)
        clients.send(self.producer, self.topic, key=seen.key, value=observation.encode(seen), on_delivery=self._delivered)
        self.producer.poll(0)

    def _delivered(self, error: Any, _message: Any) -> None:
        if error is not None:
            self.failures.append(str(error))

    def flush(self, timeout: float = 30.0) -> None:
        left = self.producer.flush(timeout)
        if left or self.failures:
            raise VeloxError(f"{left} observations not acknowledged in {timeout} s; refused: {self.failures[:3]}")

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> FeedbackProducer:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.close()
