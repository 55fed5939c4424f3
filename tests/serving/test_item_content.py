"""Items described by their attributes, at the edge: written through ``POST /v1/items/{id}``,
followed from the ``items`` topic, and an item the version did not train on scored by what its
content model maps them to. No worker: answers are the active version's own (``default``), which is
what an item's features change.

The version is planted: its items' factors are a line in their title's length, and its users like
long titles (0 to 19) or short ones (20 to 39); its content model is learned with the tests' own
feature function (``tests.custom_item_features``), which the edge must use to map new items.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from velox.control import items, topics, versions
from velox.model import content
from velox.model.store import ModelStore
from velox.model.version import ModelVersion
from velox.schemas.model_version import VersionInfo
from velox.serving.edge import Edge
from velox.serving.server import create_app
from velox.settings import Settings

ADMIN = {"Authorization": "Bearer s3cret"}
LIKES = np.array([1.0, 0.5])  # the direction of long titles in factor space
CUSTOM = "tests.custom_item_features:title_length"


def planted() -> ModelVersion:
    """60 items with titles of 1 to 60 characters, factors (length − 30) / 10 along ``LIKES``; users
    0-19 along it, 20-39 against it; item 500 (a title of 70) described by content at the retrain."""
    titles = [{"title": "x" * n} for n in range(1, 61)]
    factors = np.array([(n - 30) / 10 * LIKES for n in range(1, 61)], np.float32)
    users = np.array([[*LIKES, 0.0]] * 20 + [[*-LIKES, 0.0]] * 20, np.float32)
    model = content.fit(CUSTOM, titles, np.hstack([factors, np.zeros((60, 1))]), users)
    trained = ModelVersion("planted-titles", 3.5, np.arange(60, dtype=np.int64), factors, np.zeros(60, np.float32),
                           np.arange(1000, 1040, dtype=np.int64), users, np.full(40, 10, np.int64), content=model)
    mapped, bias = model.map([{"title": "x" * 70}])
    return replace(trained.appended(np.array([500]), mapped, bias), trained_items=60)


PLANTED = planted()


@pytest.fixture(scope="module")
def edge(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Settings]]:
    own = settings.replace(data=tmp_path_factory.mktemp("items"), namespace=f"i{uuid.uuid4().hex[:8]}-",
                           partitions=1, item_shrinkage=math.inf, admin_token="s3cret")
    topics.ensure(own)
    ModelStore(own.model_store).save(PLANTED, VersionInfo(id=PLANTED.id, created_at=time.time(), d=3, training_end={0: 0}))
    versions.activate(own, PLANTED.id, reason="test")
    items.save(own, [(500, {"title": "x" * 70})])  # as the retrain saw it
    opened = Edge.open(own)
    try:
        with TestClient(create_app(opened)) as client:
            yield client, own
    finally:
        opened.close()


def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, "not within 30 s"
        time.sleep(0.05)
    return found


def test_attributes_written_through_the_edge_are_followed(edge: tuple[TestClient, Settings]) -> None:
    client, _ = edge
    written = client.post("/v1/items/news%2F2026%2Fkafka", json={"topic": "streams", "tags": ["kafka"], "year": 2026},
                          headers=ADMIN)
    assert written.status_code == 202, written.text
    assert written.json()["attributes"] == {"tags": ["kafka"], "topic": "streams", "year": 2026.0}
    held = eventually(lambda: client.get("/v1/items/news%2F2026%2Fkafka").json().get("attributes"))
    assert held == {"tags": ["kafka"], "topic": "streams", "year": 2026.0}


@pytest.mark.parametrize(("body", "said"), [({"year": True}, "year"), ({"tags": ["a", 1]}, "tags"),
                                            ({"size": {"w": 1}}, "size")])
def test_bad_attributes_are_refused_with_the_field_named(edge: tuple[TestClient, Settings], body: object,
                                                         said: str) -> None:
    client, _ = edge
    refused = client.post("/v1/items/9", json=body, headers=ADMIN)
    assert refused.status_code == 400
    assert refused.json()["detail"].startswith(f"bad attributes: {said}:")


def test_writing_attributes_is_an_admin_call(edge: tuple[TestClient, Settings]) -> None:
    client, _ = edge
    assert client.post("/v1/items/9", json={"year": 1}).status_code == 401
    assert client.get("/v1/items/9").status_code == 404


def mapped_score(user: int, title: str) -> float:
    assert PLANTED.content is not None
    factors, bias = PLANTED.content.map([{"title": title}])
    w = PLANTED.prior(user)
    return PLANTED.global_mean + float(bias[0]) + float(factors[0] @ w[:-1]) + float(w[-1])


def test_a_new_item_is_scored_by_its_content_at_once_and_rescored_when_its_attributes_change(
        edge: tuple[TestClient, Settings]) -> None:
    client, _ = edge
    assert client.post("/v1/items/fresh", json={"title": "x" * 80}, headers=ADMIN).status_code == 202
    answer = eventually(lambda: (found := client.get("/v1/models/default/predict?user=1003&item=fresh").json())
                        ["features"] == "content" and found)
    assert answer["known_item"] is False
    assert answer["score"] == pytest.approx(mapped_score(1003, "x" * 80), abs=1e-4)
    assert answer["score"] > 3.5 + 4  # the custom function's length, not the default's hashed title
    assert client.post("/v1/items/fresh", json={"title": "x" * 3}, headers=ADMIN).status_code == 202
    rescored = eventually(lambda: (found := client.get("/v1/models/default/predict?user=1003&item=fresh").json())
                          ["score"] < 3.5 and found)
    assert rescored["score"] == pytest.approx(mapped_score(1003, "x" * 3), abs=1e-4)
    trained = client.get("/v1/models/default/predict?user=1003&item=7").json()
    assert trained["features"] == "trained" and trained["known_item"] is True
    assert client.get("/v1/models/default/predict?user=1003&item=nothing-known").json()["features"] == "none"


def test_a_brand_new_item_reaches_the_top_10_of_its_natural_audience_before_its_first_rating(
        edge: tuple[TestClient, Settings]) -> None:
    client, _ = edge
    assert client.post("/v1/items/epic", json={"title": "x" * 75}, headers=ADMIN).status_code == 202

    def best(user: int) -> list[object]:
        return [entry["item"] for entry in client.get(f"/v1/models/default/top_k?user={user}&k=10").json()["items"]]

    eventually(lambda: "epic" in best(1000))
    assert all(best(user)[0] == "epic" for user in range(1000, 1020))  # those who like long titles
    assert all("epic" not in best(user) for user in range(1020, 1040))  # those who do not


def test_an_item_described_at_the_retrain_is_scored_by_its_row_and_rescored_when_its_attributes_change(
        edge: tuple[TestClient, Settings]) -> None:
    client, _ = edge
    stored = client.get("/v1/models/default/predict?user=1005&item=500").json()
    assert stored["features"] == "content" and stored["known_item"] is False
    assert stored["score"] == pytest.approx(mapped_score(1005, "x" * 70), abs=1e-4)
    assert client.post("/v1/items/500", json={"title": "x" * 2}, headers=ADMIN).status_code == 202
    rescored = eventually(lambda: (found := client.get("/v1/models/default/predict?user=1005&item=500").json())
                          ["score"] < 3.5 and found)
    assert rescored["score"] == pytest.approx(mapped_score(1005, "x" * 2), abs=1e-4)
