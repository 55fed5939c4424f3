"""Users and items named by strings, end to end: a broker, a worker, Spark and the edge.

MovieLens re-keyed (each user a UUID, each item ``SKU-<number>``, in the order of the integer ids)
goes through the same pipeline as the integer ids: load, retrain, online updates, predict and
top-k answer the same, each id as it was given.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from tests.streams.harness import (
    WorkerProcess,
    produce,
    wait_until_committed,
    worker_states,
)
from velox.batch.job import retrain
from velox.batch.train import TrainParams
from velox.local.loader import PYSPARK_SAMPLE, read_movielens
from velox.schemas import observation
from velox.schemas.observation import Observation
from velox.serving.edge import Edge
from velox.serving.server import create_app
from velox.settings import Settings

# py4j leaves its gateway's sockets to the collector when a retrain stops its Spark session.
pytestmark = pytest.mark.filterwarnings("ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning")
PARAMS = TrainParams(rank=6, iterations=5, seed=3)
ODD = ["Zoë Ångström", "a,b,c", "news/2026/12/07/kafka-4-2", "50% off & more", "?x=1#y", "東京"]


def user_id(number: int) -> str:
    """A UUID per integer id, in the integers' order."""
    return str(uuid.UUID(int=(number + 1) << 64 | 0x4000_8000_0000_0000))


def item_id(number: int) -> str:
    return f"SKU-{number:06d}"


def rekeyed(ratings: list[Observation]) -> list[Observation]:
    return [Observation(user=user_id(r.user), item=item_id(r.item), score=r.score, time=r.time) for r in ratings]


@contextmanager
def system(settings: Settings, data: Path, history: list[Observation], stream: list[Observation],
           ) -> Iterator[tuple[TestClient, Settings, float | None, WorkerProcess]]:
    """A worker on one partition (so both runs hold out the same rows), the history trained on,
    then the stream applied online, and an edge: the client, the settings, the validation RMSE
    and the worker."""
    own = settings.replace(data=data, namespace=f"s{uuid.uuid4().hex[:8]}-", partitions=1, worker_metrics_port=0,
                           item_shrinkage=float("inf"), admin_token="s3cret")
    worker = WorkerProcess(own)
    worker.start()
    try:
        topic = own.topic("observations")
        produce(own, topic, [(e.key, observation.encode(e)) for e in history])
        wait_until_committed(own, topic, worker)
        mark = worker.log.stat().st_size
        info = retrain(own, PARAMS, master="local[1]", reason="string ids")
        worker.wait_logged(f"swapped to version {info.id}", after=mark)
        produce(own, topic, [(e.key, observation.encode(e)) for e in stream])
        wait_until_committed(own, topic, worker)
        edge = Edge.open(own)
        try:
            with TestClient(create_app(edge)) as client:
                yield client, own, info.validation_rmse, worker
        finally:
            edge.close()
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def ratings() -> list[Observation]:
    return read_movielens(PYSPARK_SAMPLE)


def test_movielens_under_uuid_users_and_sku_items_answers_as_under_integer_ids(
    settings: Settings, tmp_path: Path, ratings: list[Observation],
) -> None:
    history, stream = ratings[:1200], ratings[1200:]
    users = sorted({r.user for r in ratings})[:8]
    items = sorted({r.item for r in ratings})[::9]
    answers: dict[str, dict] = {}
    for name, (first, later) in {"integers": (history, stream), "strings": (rekeyed(history), rekeyed(stream))}.items():
        as_given = (lambda n: n) if name == "integers" else user_id
        item_as_given = (lambda n: n) if name == "integers" else item_id
        with system(settings, tmp_path / name, first, later) as (client, own, validation, _):
            predicted = {(u, i): client.get("/v1/models/default/predict",
                                            params={"user": as_given(u), "item": item_as_given(i)}).json()
                         for u in users for i in items}
            ranked = {u: client.get("/v1/models/default/top_k", params={"user": as_given(u), "k": 10}).json()
                      for u in users}
            states = worker_states(own)
            answers[name] = {"validation": validation, "predicted": predicted, "ranked": ranked,
                             "counts": sorted(s.count for s in states.values())}
    ints, strings = answers["integers"], answers["strings"]
    assert abs(ints["validation"] - strings["validation"]) <= 0.002
    assert ints["counts"] == strings["counts"]  # every event applied once, to the same users
    for (u, i), answer in ints["predicted"].items():
        other = strings["predicted"][(u, i)]
        assert (other["user"], other["item"]) == (user_id(u), item_id(i)) and answer["user"] == u
        assert other["known_user"] == answer["known_user"] and other["known_item"] == answer["known_item"]
        assert other["score"] == pytest.approx(answer["score"], abs=1e-4)
    for u, answer in ints["ranked"].items():
        assert [e["item"] for e in strings["ranked"][u]["items"]] == [item_id(e["item"]) for e in answer["items"]]
        np.testing.assert_allclose([e["score"] for e in strings["ranked"][u]["items"]],
                                   [e["score"] for e in answer["items"]], atol=1e-4)


def test_ids_with_commas_slashes_percents_spaces_and_other_letters_round_trip(
    settings: Settings, tmp_path: Path, ratings: list[Observation],
) -> None:
    """Through observe (HTTP) and Kafka, the worker's state, a retrain, predict and top-k."""
    odd = [Observation(user=ODD[n % len(ODD)], item=ODD[(n + 1) % len(ODD)], score=float(1 + n % 5), time=n)
           for n in range(120)]
    with system(settings, tmp_path / "odd", ratings[:600], []) as (client, own, _, worker):
        for event in odd[:60]:
            taken = client.post("/v1/models/default/observe",
                                json={"user": event.user, "item": event.item, "score": event.score})
            assert taken.status_code == 202, taken.text
        produce(own, own.topic("observations"), [(e.key, observation.encode(e)) for e in odd[60:]])
        wait_until_committed(own, own.topic("observations"), worker)
        states = worker_states(own)
        assert {user: states[user].count for user in ODD} == {user: 20 for user in ODD}  # each event once
        rated = {user: {i for i in states[user].seen.tolist()} for user in ODD}
        assert all(len(items) == 1 for items in rated.values())  # one item each, by its code
        mark = worker.log.stat().st_size
        info = retrain(own, PARAMS, master="local[1]", reason="odd ids")
        worker.wait_logged(f"swapped to version {info.id}", after=mark)
        for user in ODD:
            answer = client.get("/v1/models/default/predict", params={"user": user, "item": ODD[0]}).json()
            assert answer["version"] == info.id and answer["user"] == user and answer["item"] == ODD[0]
            assert answer["known_user"] and answer["known_item"]  # the retrain trained them, by name
        body = client.post("/v1/models/default/top_k", json={"user": ODD[0], "k": 3, "candidates": ODD}).json()
        query = client.get("/v1/models/default/top_k",
                           params=[("user", ODD[0]), ("k", "3"), *[("candidates", item) for item in ODD]]).json()
        assert [e["item"] for e in query["items"]] == [e["item"] for e in body["items"]]
        assert len(body["items"]) == 3 and {e["item"] for e in body["items"]} <= set(ODD)
        catalog = client.get("/v1/models/default/top_k", params={"user": ODD[1], "k": 200}).json()["items"]
        assert set(ODD) <= {e["item"] for e in catalog}  # the version's items, each as it was given
