"""Items described by their attributes, at the edge: written through ``POST /v1/items/{id}``,
followed from the ``items`` topic. No worker: answers are the active version's own (``default``),
which is what an item's features change."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from velox.control import topics
from velox.serving.edge import Edge
from velox.serving.server import create_app
from velox.settings import Settings

ADMIN = {"Authorization": "Bearer s3cret"}


@pytest.fixture(scope="module")
def edge(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Settings]]:
    own = settings.replace(data=tmp_path_factory.mktemp("items"), namespace=f"i{uuid.uuid4().hex[:8]}-",
                           partitions=1, d=5, items=50, item_shrinkage=math.inf, admin_token="s3cret")
    topics.ensure(own)
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
    held = eventually(lambda: client.get("/v1/items/news%2F2026%2Fkafka").json()["attributes"])
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
