"""``velox.client`` against the real edge, worker and broker: every route it wraps, sync and async,
errors with the edge's message, and feedback produced to each user's home partition."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace

import httpx
import pytest
from starlette.testclient import TestClient

from tests.streams.harness import read_all
from velox.client import AsyncClient, Client, ClientError, FeedbackProducer, Routes
from velox.control.versions import initial_version
from velox.model.store import ModelStore
from velox.schemas import partitioning
from velox.schemas.model_version import VersionInfo
from velox.settings import Settings


def until(check, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "not within the timeout"
        time.sleep(0.05)
    return result


def test_the_client_round_trips_every_route_it_wraps(edge_url: str, served: tuple[TestClient, Settings]) -> None:
    _, settings = served
    with Client(edge_url, admin_token=settings.admin_token) as velox:
        before = velox.predict(user=7, item=9)
        assert before.user == 7 and before.item == 9 and before.known_user and not before.default
        best = velox.top_k(user=7, k=3, exclude_seen=True)
        assert len(best.items) == 3 and not {entry.item for entry in best.items} & set(range(5))
        assert [e.item for e in velox.top_k(user=7, k=2, candidates=[11, 12]).items] in ([11, 12], [12, 11])
        accepted = velox.observe(user=7, item=9, score=5.0)
        assert accepted.status == "accepted"
        assert accepted.partition == partitioning.home(b"7", settings.partitions)
        until(lambda: velox.predict(user=7, item=9).score != before.score)  # the worker applied it
        first = initial_version(settings)
        saved = replace(first, id=f"client-{uuid.uuid4().hex[:6]}")
        ModelStore(settings.model_store).save(saved, VersionInfo(id=saved.id, created_at=time.time(), d=saved.d,
                                                                  training_end={}))
        assert saved.id in [v.id for v in velox.versions().versions]
        assert velox.activate(saved.id).active == saved.id
        listed = until(lambda: (found := velox.versions()).active == saved.id and found)
        assert [v.id for v in listed.versions if v.active] == [saved.id]

        httpx.put(f"{edge_url}/v1/apps/client-app", json={"default_output": 3.0},
                  headers={"Authorization": f"Bearer {settings.admin_token}"}).raise_for_status()
        httpx.post(f"{edge_url}/v1/apps/client-app/models/default",
                   headers={"Authorization": f"Bearer {settings.admin_token}"}).raise_for_status()
        chosen = until(lambda: (answer := velox.app_predict("client-app", user=7, item=9)).model and answer)
        assert chosen.app == "client-app" and chosen.model == "default" and chosen.decision


def test_errors_carry_the_edges_status_and_message(edge_url: str) -> None:
    with Client(edge_url) as velox, pytest.raises(ClientError) as refused:
        velox.activate("anything")
    assert refused.value.status == 401 and "VELOX_ADMIN_TOKEN" in refused.value.detail
    with Client(edge_url, model="nope") as other, pytest.raises(ClientError) as missing:
        other.predict(user=1, item=1)
    assert missing.value.status == 404 and "no model 'nope'" in str(missing.value)


def test_the_async_client_answers_like_the_sync_one(edge_url: str) -> None:
    async def ask() -> tuple[float, str]:
        async with AsyncClient(edge_url) as velox:
            prediction, accepted = await asyncio.gather(velox.predict(user=7, item=3),
                                                        velox.observe(user=8, item=3, score=4.0))
            return prediction.score, accepted.status

    score, status = asyncio.run(ask())
    with Client(edge_url) as velox:
        assert velox.predict(user=7, item=3).score == score
    assert status == "accepted"


def test_feedback_producer_lands_in_each_users_home_partition_and_is_learned(
    edge_url: str, served: tuple[TestClient, Settings],
) -> None:
    _, settings = served
    users = range(9001, 9021)
    with FeedbackProducer(settings.bootstrap, namespace=settings.namespace) as feedback:
        for user in users:
            feedback.send(user=user, item=1, score=4.0)
    mine = [m for m in read_all(settings, settings.topic("observations")) if int(m.key()) in users]
    assert len(mine) == len(users)
    assert all(m.partition() == partitioning.home(m.key(), settings.partitions) for m in mine)
    with Client(edge_url) as velox:
        until(lambda: all(velox.predict(user=user, item=1).known_user for user in users))


def test_observe_carries_the_observe_token_and_activate_the_admin_token() -> None:
    """The edge asks each write for its own token (VELOX_OBSERVE_TOKEN, VELOX_ADMIN_TOKEN); reads carry none."""
    routes = Routes("default", admin_token="adm", observe_token="obs")
    assert routes.observe(1, 2, 3.0, None).headers == {"Authorization": "Bearer obs"}
    assert routes.activate("v1").headers == {"Authorization": "Bearer adm"}
    assert routes.predict(1, 2).headers is None and routes.top_k(1, 3, False, None).headers is None


def test_observe_sends_a_kind_for_an_implicit_system() -> None:
    routes = Routes("default")
    assert routes.observe(1, 2, None, 5.0, "click").body == {"user": 1, "item": 2, "kind": "click", "time": 5.0}
    assert routes.observe(1, 2, 4.0, None).body == {"user": 1, "item": 2, "score": 4.0}
