"""Applications through the real edge, worker and broker: the policy learns from ratings on Kafka.

The worker starts from a planted split model, so the system's model predicts each user's
ratings up to the noise, while ``popularity`` (μ + item bias for everyone) is clearly worse.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import msgspec
import numpy as np
import pytest
from starlette.testclient import TestClient

from tests.serving.conftest import planted_edge
from tests.streams.harness import read_all
from velox.control import app_registry
from velox.model.batch_scores import predict_many
from velox.schemas import application as app_schema
from velox.serving.edge import Edge
from velox.settings import Settings

ADMIN = {"Authorization": "Bearer s3cret"}


@pytest.fixture(scope="module")
def edge(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Settings, object]]:
    with planted_edge(settings, tmp_path_factory, "apps") as served:
        yield served


def register(client: TestClient, name: str, **fields: object) -> dict:
    response = client.put(f"/v1/apps/{name}", json={"default_output": 3.0, **fields}, headers=ADMIN)
    assert response.status_code == 200, response.text
    for model in ("default", "popularity"):
        assert client.post(f"/v1/apps/{name}/models/{model}", headers=ADMIN).status_code == 200
    return client.get(f"/v1/apps/{name}").json()


def test_thompson_routes_90_percent_to_the_better_model_from_ratings_on_kafka(edge) -> None:
    client, _, truth = edge
    assert register(client, "movies", policy="thompson")["models"] == ["default", "popularity"]
    rng = np.random.default_rng(9)
    chosen = []
    for _ in range(400):
        user, item = int(rng.choice(truth.user_ids)), int(rng.choice(truth.item_ids))
        answer = client.get("/v1/apps/movies/predict", params={"user": user, "item": item}).json()
        assert answer["default"] is False and 0 < answer["propensity"] <= 1
        chosen.append(answer["model"])
        rating = float(predict_many(truth, np.array([user]), np.array([item]))[0] + rng.normal(0, 0.3))
        assert client.post("/v1/models/default/observe", json={"user": user, "item": item, "score": rating}).status_code == 202
    late = chosen[-100:]
    served = client.app.state.edge
    assert late.count("default") >= 90, (late.count("default"), served.selector.arms, served.selector.offsets, len(served.selector.pending))
    assert set(chosen[:50]) == {"default", "popularity"}  # it did explore


def test_a_sticky_user_keeps_their_model_and_users_differ(edge) -> None:
    client, _, truth = edge
    register(client, "sticky", policy="ab", weights=[0.5, 0.5], sticky_s=60)
    per_user = {}
    for user in truth.user_ids[:20].tolist():
        models = {client.get("/v1/apps/sticky/predict", params={"user": user, "item": 1}).json()["model"]
                  for _ in range(5)}
        assert len(models) == 1, (user, models)
        per_user[user] = models.pop()
    assert set(per_user.values()) == {"default", "popularity"}


def test_policy_state_survives_a_restart_of_the_edge(edge) -> None:
    client, own, truth = edge
    register(client, "restart", policy="exp3")
    for user in truth.user_ids[:30].tolist():
        answer = client.get("/v1/apps/restart/predict", params={"user": user, "item": 2}).json()
        client.post("/v1/models/default/observe", json={"user": user, "item": 2, "score": answer["score"] + 2.0})
    served: Edge = client.app.state.edge
    deadline = time.monotonic() + 20
    while served.selector.arms[("restart", "*")].pulls.sum() < 30:
        assert time.monotonic() < deadline, "the rewards never arrived"
        time.sleep(0.05)
    learned = served.selector.arms[("restart", "*")]
    served.selector.snapshot()
    again = Edge.open(own)
    try:
        restored = again.selector.arms[("restart", "*")]
        np.testing.assert_array_equal(restored.log_weights, learned.log_weights)
        assert restored.pulls.sum() == 30
    finally:
        again.close()


def test_an_app_without_models_answers_its_default_output_and_bad_admin_calls_are_4xx(edge) -> None:
    client, _, _ = edge
    assert client.put("/v1/apps/empty", json={"default_output": 2.5}, headers=ADMIN).status_code == 200
    answer = client.get("/v1/apps/empty/predict", params={"user": 1, "item": 1}).json()
    assert answer["default"] is True and answer["score"] == 2.5 and "no model" in answer["reason"]
    assert client.get("/v1/apps/nope/predict", params={"user": 1, "item": 1}).status_code == 404
    assert client.put("/v1/apps/x", json={"default_output": 1}).status_code == 401
    assert client.put("/v1/apps/x", json={"slo_ms": 5}, headers=ADMIN).status_code == 400
    bad = client.put("/v1/apps/x", json={"default_output": 1, "policy": "ucb9"}, headers=ADMIN)
    assert bad.status_code == 400 and "ucb9" in bad.json()["detail"]
    assert client.post("/v1/apps/empty/models/other", headers=ADMIN).status_code == 400
    assert client.post("/v1/apps/ghost/models/default", headers=ADMIN).status_code == 404


@pytest.mark.parametrize(("fields", "said"), [
    ({"policy": "ab", "weights": [0.9, -0.1]}, "weights must be 0 or more, at least one above 0, got [0.9, -0.1]"),
    ({"policy": "ab", "weights": [0, 0]}, "weights must be 0 or more"),
    ({"policy": "epsilon", "epsilon": -0.1}, "epsilon must be between 0 and 1, got -0.1"),
    ({"policy": "exp3", "gamma": 0}, "gamma must be above 0 and at most 1, got 0"),
    ({"sticky_s": -5}, "sticky_s must be 0 or more, got -5"),
])
def test_an_app_whose_policy_could_not_draw_is_refused_at_registration(edge, fields: dict, said: str) -> None:
    """Accepted, such an app would fail every predict at the policy's draw."""
    client, _, _ = edge
    refused = client.put("/v1/apps/odd", json={"default_output": 3.0, **fields}, headers=ADMIN)
    assert refused.status_code == 400 and said in refused.json()["detail"], refused.text
    assert client.get("/v1/apps/odd/predict", params={"user": 1, "item": 1}).status_code == 404  # nothing registered


def test_velox_app_commands_register_and_link_and_every_decision_is_logged_with_its_propensity(edge) -> None:
    client, own, _ = edge
    env = {**os.environ, **own.to_env()}
    for command in (["register", "cli", "--default-output", "4", "--policy", "epsilon", "--epsilon", "0.5"],
                    ["link", "cli", "popularity"], ["link", "cli", "default"]):
        done = subprocess.run([sys.executable, "-m", "velox.cli", "app", *command], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    listed = subprocess.run([sys.executable, "-m", "velox.cli", "app", "list"], env=env, capture_output=True, text=True)
    assert '"name":"cli"' in listed.stdout and '"models":["popularity","default"]' in listed.stdout
    deadline = time.monotonic() + 5
    while client.get("/v1/apps/cli").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    answers = [client.get("/v1/apps/cli/top_k", params={"user": u, "k": 3}).json() for u in range(1, 6)]
    deadline, logged = time.monotonic() + 10, {}
    while not all(answer["decision"] in logged for answer in answers):  # logged without waiting for the broker
        assert time.monotonic() < deadline, "decisions missing from the decisions topic"
        logged = {d.id: d for d in map(app_schema.decode_decision, (m.value() for m in read_all(own, own.topic("decisions"))))}
    for answer in answers:
        decision = logged[answer["decision"]]
        assert (decision.app, decision.model, decision.propensity) == ("cli", answer["model"], answer["propensity"])
        assert sorted(decision.predictions) == sorted(str(entry["item"]) for entry in answer["items"])
        assert decision.propensity in (0.25, 0.75)  # ε = 0.5 over two models


def test_a_per_user_policy_learns_for_each_user_apart(edge) -> None:
    client, _, truth = edge
    register(client, "each", policy="exp3", per_user=True)
    alice, bob = truth.user_ids[:2].tolist()
    for item in truth.item_ids[:10].tolist():
        answer = client.get("/v1/apps/each/predict", params={"user": alice, "item": item}).json()
        client.post("/v1/models/default/observe", json={"user": alice, "item": item, "score": answer["score"]})
    client.get("/v1/apps/each/predict", params={"user": bob, "item": 1})
    served: Edge = client.app.state.edge
    deadline = time.monotonic() + 20
    while ("each", str(alice)) not in served.selector.arms or served.selector.arms[("each", str(alice))].pulls.sum() < 10:
        assert time.monotonic() < deadline, "alice's rewards never arrived"
        time.sleep(0.05)
    assert served.selector.arms[("each", str(bob))].pulls.sum() == 0  # bob's choices learn nothing from alice
    assert ("each", "*") not in served.selector.arms


def test_popularity_leaves_out_only_what_this_user_rated(edge) -> None:
    client, _, truth = edge
    register(client, "popular", policy="fixed")
    client.delete("/v1/apps/popular/models/default", headers=ADMIN)  # popularity alone
    alice, stranger = int(truth.user_ids[3]), 987_654
    assert client.post("/v1/models/default/observe", json={"user": alice, "item": 5, "score": 4.0}).status_code == 202
    ask = {"k": 2, "candidates": "5,6", "exclude_seen": "true"}
    deadline = time.monotonic() + 10
    while 5 in [e["item"] for e in client.get("/v1/apps/popular/top_k", params={"user": alice, **ask}).json()["items"]]:
        assert time.monotonic() < deadline, "alice's rating never reached her record"
        time.sleep(0.05)
    answer = client.get("/v1/apps/popular/top_k", params={"user": stranger, **ask}).json()
    assert answer["model"] == "popularity" and sorted(e["item"] for e in answer["items"]) == [5, 6]


def test_velox_app_link_refuses_a_model_not_served_and_lists_the_served_ones(edge) -> None:
    """The link check runs with the system's own settings: the command's MODEL argument is not a
    setting (it used to become ``settings.model``, and then every name was 'served')."""
    client, own, _ = edge
    env = {**os.environ, **own.to_env()}
    done = subprocess.run([sys.executable, "-m", "velox.cli", "app", "register", "typo", "--default-output", "1"],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    refused = subprocess.run([sys.executable, "-m", "velox.cli", "app", "link", "typo", "typo-model"],
                             env=env, capture_output=True, text=True)
    assert refused.returncode == 1
    assert "model 'typo-model' is not served here; the models are default, popularity" in refused.stderr


def test_an_app_linked_to_a_model_no_longer_served_answers_its_default_with_the_reason(edge) -> None:
    client, own, _ = edge
    register(client, "orphan")
    app = client.app.state.edge.selector.app("orphan")
    app_registry.save(own, msgspec.structs.replace(app, models=["gone"]))  # as if linked before the name went away
    deadline = time.monotonic() + 5
    while client.get("/v1/apps/orphan").json()["models"] != ["gone"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    answer = client.get("/v1/apps/orphan/predict", params={"user": 1, "item": 2}).json()
    assert answer["default"] is True and answer["score"] == 3.0 and answer["cause"] == "not_served"
    assert answer["model"] == "gone" and "'gone' is not served here" in answer["reason"]
    ranked = client.get("/v1/apps/orphan/top_k", params={"user": 1, "k": 3}).json()
    assert ranked["default"] is True and ranked["cause"] == "not_served" and len(ranked["items"]) == 3
