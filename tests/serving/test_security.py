"""The edge on a network: observe behind an optional token, tokens compared in constant time, HTTPS."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from velox.kafka import positions
from velox.local.broker import free_bootstrap
from velox.serving import edge as edge_module
from velox.serving.edge import Edge
from velox.serving.server import create_app
from velox.settings import Settings

TOKEN = "0bserve-t0ken"


def held(settings: Settings) -> int:
    return sum(positions.end_offsets(settings, settings.topic("observations")).values())


def test_observe_with_a_token_set_is_401_without_it_and_nothing_reaches_kafka(served) -> None:
    _, own = served
    edge = Edge.open(own.replace(observe_token=TOKEN))
    try:
        with TestClient(create_app(edge)) as client:
            before = held(own)
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {TOKEN}x"},
                            {"Authorization": TOKEN}):
                for answer in (client.post("/v1/models/default/observe", json={"user": 7, "item": 1, "score": 4},
                                           headers=headers),
                               client.post("/velox/default/observe?userid=7&item=1&score=4", headers=headers)):
                    assert answer.status_code == 401, answer.text
                    assert "VELOX_OBSERVE_TOKEN" in answer.json()["detail"]
                    assert answer.headers["www-authenticate"] == "Bearer"
            assert held(own) == before
            accepted = client.post("/v1/models/default/observe", json={"user": 7, "item": 1, "score": 4},
                                   headers={"Authorization": f"Bearer {TOKEN}"})
            assert accepted.status_code == 202, accepted.text
            assert held(own) == before + 1
            assert client.get("/v1/models/default/predict?user=7&item=1").status_code == 200  # reads stay open
    finally:
        edge.close()


def test_every_token_is_compared_in_constant_time(served, monkeypatch: pytest.MonkeyPatch) -> None:
    client, own = served
    compared: list[bytes] = []
    real = edge_module.hmac.compare_digest

    def spy(given: bytes, expected: bytes) -> bool:
        compared.append(expected)
        return real(given, expected)

    monkeypatch.setattr(edge_module.hmac, "compare_digest", spy)
    assert client.post("/v1/models/default/versions/nope/activate", headers={"Authorization": "Bearer no"}).status_code == 401
    assert compared == [f"Bearer {own.admin_token}".encode()]
    edge = Edge.open(own.replace(observe_token=TOKEN))
    try:
        with TestClient(create_app(edge)) as guarded:
            assert guarded.post("/v1/models/default/observe", json={"user": 7, "item": 1, "score": 4}).status_code == 401
    finally:
        edge.close()
    assert compared[-1] == f"Bearer {TOKEN}".encode()


def test_velox_serve_over_tls_answers_a_prediction(served, tmp_path: Path) -> None:
    """`velox serve --tls-cert --tls-key` with a throwaway certificate; the client trusts only that certificate."""
    _, own = served
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    port = int(free_bootstrap().split(":")[1])
    env = {**os.environ, **own.replace(edge_port=port).to_env()}
    with (tmp_path / "edge.log").open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "velox.cli", "serve", "--tls-cert", str(cert),
                                    "--tls-key", str(key)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url, answer = f"https://127.0.0.1:{port}/v1/models/default/predict", None
        deadline = time.monotonic() + 60
        while answer is None:
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "edge.log").read_text()[-2000:]
            try:
                answer = httpx.get(url, params={"user": 7, "item": 1}, timeout=5,
                                   verify=ssl.create_default_context(cafile=str(cert)))
            except httpx.ConnectError:
                time.sleep(0.3)
        assert answer.status_code == 200 and answer.json()["user"] == 7
        with pytest.raises(httpx.RemoteProtocolError):  # plain HTTP is not served there
            httpx.get(url.replace("https", "http"), params={"user": 7, "item": 1}, timeout=5)
    finally:
        process.terminate()
        process.wait(timeout=30)
