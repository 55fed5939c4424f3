"""Schemathesis fuzzes every route of the edge's OpenAPI document over real HTTP: no 500, answers as documented."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import schemathesis
import uvicorn
from hypothesis import settings as hypothesis_settings

from velox.broker import free_bootstrap
from velox.serving import openapi

schema = schemathesis.openapi.from_dict(openapi.document())


@pytest.fixture(scope="module")
def edge_url(served) -> Iterator[str]:
    client, _ = served
    port = int(free_bootstrap().split(":")[1])
    server = uvicorn.Server(uvicorn.Config(client.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@schema.parametrize()
@hypothesis_settings(max_examples=20, deadline=None)
def test_edge_never_fails_and_answers_as_documented(case, edge_url: str) -> None:
    response = case.call(base_url=edge_url)
    case.validate_response(response)
