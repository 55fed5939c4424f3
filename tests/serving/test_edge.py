"""The edge against a real worker's RocksDB (read as secondaries) and the real broker."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from starlette.testclient import TestClient

from velox.control import retrain_requests
from velox.kafka import clients
from velox.local.broker import free_bootstrap
from velox.model.store import ModelStore
from velox.model.version import random_version
from velox.schemas.model_version import VersionInfo
from velox.serving.edge import Edge
from velox.serving.fast_predict import FastPredict
from velox.serving.server import create_app


def test_a_plain_predict_is_answered_in_front_of_the_routes_as_the_route_answers_it(served) -> None:
    """velox.serving.fast_predict; first in the module, while user 7's record holds still."""
    client, _ = served
    reached: list[str] = []

    async def routes(scope: dict[str, Any], receive: Any, send: Any) -> None:
        reached.append(scope["query_string"].decode())
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def ask(query: str, method: str = "GET", path: str = "/v1/models/default/predict") -> tuple[int, Any]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": method, "path": path, "query_string": query.encode()}
        asyncio.run(FastPredict(routes, client.app.state.edge)(scope, receive, send))
        return sent[0]["status"], json.loads(sent[1]["body"] or b"null")

    for user in (7, 123456):  # a record read here; none (the version's own answer)
        status, answer = ask(f"user={user}&item=3")
        assert status == 200 and not reached
        assert answer == client.get(f"/v1/models/default/predict?user={user}&item=%33").json()  # (%: by the route)
    # Anything else goes on to the routes, which answer it (the 400 naming what was wrong, the forward).
    passed = ["user=7", "user=7&item=%33", "user=&item=3", "item=3&user=a%0Ab", "user=7&item=" + "x" * 300]
    for query in passed:
        assert ask(query)[0] == 404
    assert ask("user=7&item=3", method="POST")[0] == 404 and ask("user=7&item=3", path="/v1/models/other/predict")[0] == 404
    assert reached == [*passed, "user=7&item=3", "user=7&item=3"]


def test_predict_reads_the_users_state_and_observe_moves_it_within_a_second(served) -> None:
    client, _ = served
    before = client.get("/v1/models/default/predict", params={"user": 7, "item": 3}).json()
    assert before["known_user"] is True and before["version"] == "initial-50x5-seed0"
    for _ in range(5):
        response = client.post("/v1/models/default/observe", json={"user": 7, "item": 3, "score": 5.0})
        assert response.status_code == 202, response.text
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        after = client.get("/v1/models/default/predict", params={"user": 7, "item": 3}).json()
        if after["score"] > before["score"]:
            break
        time.sleep(0.02)
    assert after["score"] > before["score"]


def test_unknown_user_scores_as_the_mean_user(served) -> None:
    client, _ = served
    body = client.get("/v1/models/default/predict", params={"user": 123456, "item": 3}).json()
    assert body["known_user"] is False


def test_top_k_is_sorted_and_sized(served) -> None:
    client, _ = served
    body = client.get("/v1/models/default/top_k", params={"user": 7, "k": 5}).json()
    scores = [entry["score"] for entry in body["items"]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    only = client.get("/v1/models/default/top_k", params={"user": 7, "k": 5, "candidates": "1,2,3"}).json()
    assert sorted(entry["item"] for entry in only["items"]) == [1, 2, 3]
    repeated = client.get("/v1/models/default/top_k", params=[("user", 7), ("k", 5), *[("candidates", i) for i in (1, 2, 3)]])
    posted = client.post("/v1/models/default/top_k", json={"user": 7, "k": 5, "candidates": [1, "2", 3]})
    for answer in (repeated.json(), posted.json()):  # (the user's state may move between them: ids only)
        assert sorted(entry["item"] for entry in answer["items"]) == [1, 2, 3]  # "2" and 2 are one id


def test_top_k_can_leave_out_what_the_user_rated(served) -> None:
    client, _ = served  # user 7 rated items 0..4
    params = {"user": 7, "k": 5, "candidates": "3,4,5,6,7"}
    kept = client.get("/v1/models/default/top_k", params=params).json()
    left_out = client.get("/v1/models/default/top_k", params={**params, "exclude_seen": "true"}).json()
    assert sorted(entry["item"] for entry in kept["items"]) == [3, 4, 5, 6, 7]
    assert sorted(entry["item"] for entry in left_out["items"]) == [5, 6, 7]
    bad = client.get("/v1/models/default/top_k", params={**params, "exclude_seen": "maybe"})
    assert bad.status_code == 400 and "exclude_seen" in bad.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "words"),
    [
        ("get", "/v1/models/nope/predict", {"params": {"user": 1, "item": 1}}, 404, "no model 'nope'"),
        ("get", "/v1/models/default/predict", {"params": {"user": "", "item": 1}}, 400, "'user': an id is not empty"),
        ("get", "/v1/models/default/predict", {"params": {"user": 1}}, 400, "'item' is required"),
        ("get", "/v1/models/default/predict", {"params": {"user": 1, "item": "x" * 257}}, 400,
         "'item': an id is at most 256 bytes of UTF-8, got 257"),
        ("get", "/v1/models/default/predict", {"params": {"user": "a\tb", "item": 1}}, 400,
         "'user': an id has no control characters"),
        ("get", "/v1/models/default/top_k", {"params": {"user": 1, "candidates": ["a", ""]}}, 400,
         "'candidates': an id is not empty"),
        ("post", "/v1/models/default/top_k", {"json": {"user": 1, "candidates": [1, "\u0001"]}}, 400, "bad top-k request"),
        ("post", "/v1/models/default/top_k", {"json": {"user": 1, "k": 5, "color": "red"}}, 400, "unknown field"),
        ("post", "/v1/models/default/observe", {"json": {"user": "", "item": 2, "score": 1}}, 400, "user: an id is not empty"),
        ("get", "/v1/models/default/top_k", {"params": {"user": 1, "k": 0}}, 400, "'k' must be"),
        ("post", "/v1/models/default/observe", {"content": b"{not json"}, 400, "bad observation"),
        ("post", "/v1/models/default/observe", {"json": {"user": 1, "item": 2}}, 400, "score"),
        ("post", "/v1/models/default/observe", {"json": {"user": 1, "item": 2, "kind": "click"}}, 400,
         "score: this system learns from scores"),
        ("post", "/v1/models/default/observe", {"json": [1, 2]}, 400, "JSON object"),
        ("post", "/v1/models/default/observe", {"content": b"x" * (64 * 1024 + 1)}, 413, "over 64 KiB"),
    ],
)
def test_bad_requests_get_a_json_4xx_naming_the_problem(served, method, path, kwargs, status, words) -> None:
    client, _ = served
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status
    assert words in response.json()["detail"]


def test_health_readiness_and_metrics(served) -> None:
    client, _ = served
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["partitions"]
    assert "velox_edge_request_seconds_bucket" in client.get("/metrics").text


def test_the_velox_paper_paths_are_aliases(served) -> None:
    client, _ = served
    native = client.get("/v1/models/default/predict", params={"user": 7, "item": 4}).json()
    alias = client.get("/velox/default/predict", params={"userid": 7, "item": 4}).json()
    assert alias["score"] == native["score"]
    top = client.get("/velox/default/predict_top_k", params={"userid": 7, "k": 3}).json()
    assert len(top["items"]) == 3
    assert client.post("/velox/default/observe", params={"userid": 8, "item": 1, "score": 4}).status_code == 202
    assert client.post("/velox/default/observe", params={"userid": 8, "item": 1, "score": "x"}).status_code == 400


def test_activate_needs_the_admin_token_and_a_stored_version(served) -> None:
    client, own = served
    assert client.post("/v1/models/default/versions/v1/activate").status_code == 401
    wrong = client.post("/v1/models/default/versions/v1/activate", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    token = {"Authorization": f"Bearer {own.admin_token}"}
    missing = client.post("/v1/models/default/versions/nope/activate", headers=token)
    assert missing.status_code == 404 and "no complete version 'nope'" in missing.json()["detail"]

    stored = random_version(50, 5, seed=8)
    ModelStore(own.model_store).save(stored, VersionInfo(id=stored.id, created_at=time.time(), d=5, training_end={}))
    assert client.post(f"/v1/models/default/versions/{stored.id}/activate", headers=token).status_code == 200
    listed = client.get("/v1/models/default/versions").json()
    assert [v["id"] for v in listed["versions"]] == [stored.id]
    deadline = time.monotonic() + 5
    while client.get("/v1/models").json()["models"][0]["version"] != stored.id and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.get("/v1/models").json()["models"][0]["version"] == stored.id


def test_retrain_needs_the_token_and_logs_a_request_for_the_controller(served) -> None:
    client, own = served
    assert client.post("/v1/models/default/retrain").status_code == 401
    response = client.post("/v1/models/default/retrain", params={"reason": "new catalogue"},
                           headers={"Authorization": "Bearer s3cret"})
    assert response.status_code == 202, response.text
    reader = retrain_requests.reader(own)
    try:
        deadline, found = time.monotonic() + 20, []
        while not found and time.monotonic() < deadline:
            found = retrain_requests.pending(reader, own)
            time.sleep(0.1)
    finally:
        reader.close()
    assert [(r.id, r.reason) for r in found] == [(response.json()["request"], "new catalogue")]


def test_observe_answers_503_with_retry_after_when_kafka_does_not_acknowledge(served) -> None:
    _, own = served
    dead = own.replace(bootstrap=free_bootstrap())
    edge = Edge.open(own)
    edge.producer, edge.ack_timeout = clients.producer(dead), 0.5
    try:
        with TestClient(create_app(edge)) as client:
            response = client.post("/v1/models/default/observe", json={"user": 1, "item": 2, "score": 3.0})
    finally:
        edge.close()
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
