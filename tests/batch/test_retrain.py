"""Retrain with Spark while observations keep coming, swap, roll back: no observation lost or doubled.

The first three tests share a worker and a topic per engine (a worker's swaps are what they
test); each checks every event the topic holds, so any of them runs alone too (``-k``).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.streams.harness import (
    WorkerProcess,
    assert_item_totals_are_the_formula,
    produce,
    read_all,
    wait_until_committed,
    worker_states,
)
from velox.batch.job import WarmJob, retrain
from velox.batch.train import TrainParams
from velox.control import items, topics, versions
from velox.kafka import positions
from velox.model.learner import Learner, make_rule
from velox.model.store import ModelStore
from velox.model.version import ModelVersion
from velox.schemas import ids, observation, partitioning
from velox.schemas.model_version import VersionInfo
from velox.schemas.observation import Observation
from velox.schemas.user_state import UserState
from velox.settings import Settings
from velox.streams import swap
from velox.streams.kafka_engine import Worker

PARAMS = TrainParams(rank=4, iterations=5)
CUSTOM_FEATURES = "tests.custom_item_features:title_length"
# py4j (Spark's gateway) leaves sockets for the garbage collector; nothing of ours.
pytestmark = pytest.mark.filterwarnings("ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning")


def reference_on(settings: Settings, version: ModelVersion, training_end: dict[int, int]) -> dict[int, UserState]:
    """Each trained user from their vector and training count, then every observation after the training end;
    the items each rated, before the training end too."""
    learner = Learner(version, make_rule(**settings.rule_params()))
    states = {
        int(user): learner.rule.start(version.id, version.user_vectors[row], int(version.user_counts[row]))
        for row, user in enumerate(version.user_ids)
    }
    rated: dict[int, list[int]] = {}  # every item each user rated, before the training end too
    for message in read_all(settings, settings.topic("observations")):
        seen = observation.counted(message.key(), message.value(), message.partition(), settings.partitions)
        if seen is None:
            continue
        rated.setdefault(seen.user, []).append(seen.item)
        if message.offset() >= training_end.get(message.partition(), 0):
            states[seen.user], _ = learner.observe(states.get(seen.user), seen.user_code, seen.item_code,
                                                   seen.score, message.offset())
    return {user: state._replace(seen=np.array(rated.get(user, []), np.int64)) for user, state in states.items()}


def assert_matches(actual: dict[int, UserState], expected: dict[int, UserState]) -> None:
    assert actual.keys() == expected.keys()
    for user, want in expected.items():
        got = actual[user]
        assert (got.version, got.count) == (want.version, want.count), f"user {user}"
        np.testing.assert_allclose(got.w, want.w, atol=1e-5, err_msg=f"user {user}")
        assert set(got.seen.tolist()) == set(want.seen.tolist()), f"user {user}: the items they rated"


@pytest.fixture(scope="module", params=["kafka", "faust"])
def running(settings: Settings, tmp_path_factory: pytest.TempPathFactory,
            request: pytest.FixtureRequest) -> Iterator[tuple[Settings, WorkerProcess]]:
    own = settings.replace(
        data=tmp_path_factory.mktemp("retrain"), namespace=f"r{uuid.uuid4().hex[:8]}-", partitions=4, d=5,
        items=60, worker_metrics_port=0, holdout=0.2, engine=request.param,
    )
    worker = WorkerProcess(own)
    worker.start()
    yield own, worker
    worker.stop()


@pytest.fixture
def live(running: tuple[Settings, WorkerProcess]) -> tuple[Settings, WorkerProcess]:
    """The module's worker, started again if a test before stopped it to read its states."""
    _, worker = running
    if worker.process is None:
        worker.start()
    return running


def produced(settings: Settings) -> dict[int, int]:
    """The events in the topic by partition: every test's so far (none is invalid or outside its home partition)."""
    return positions.end_offsets(settings, settings.topic("observations"))


def counted(settings: Settings, states: dict[int, UserState]) -> dict[int, int]:
    """The events the states count, by their users' home partition: equal to ``produced`` when each
    was applied once (where not, the partitions that differ say where to look)."""
    by_partition = dict.fromkeys(range(settings.partitions), 0)
    for user, state in states.items():
        by_partition[partitioning.home(ids.key(user), settings.partitions)] += state.count
    return by_partition


def steady_load(settings: Settings, events: int, seed: int, per_second: float | None = 800.0) -> threading.Thread:
    """Produce ``events`` in batches of 500 at ``per_second`` (None: as fast as they go, for history
    that is waited for), in a thread."""
    rng = random.Random(seed)
    load = [(e.key, observation.encode(e)) for e in (
        Observation(user=rng.randrange(120), item=rng.randrange(60), score=float(rng.randint(1, 5)), time=i)
        for i in range(events))]

    def send() -> None:
        started = time.monotonic()
        for start in range(0, len(load), 500):
            produce(settings, settings.topic("observations"), load[start:start + 500])
            if per_second is not None:
                time.sleep(max(0.0, started + (start + 500) / per_second - time.monotonic()))

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def test_retrain_during_a_steady_stream_swaps_without_losing_or_doubling_an_observation(
    live: tuple[Settings, WorkerProcess],
) -> None:
    settings, worker = live
    worker.wait_ready()  # on the version before: the new one comes as a swap (a Faust worker takes seconds to start)
    before = steady_load(settings, 4_000, seed=1, per_second=None)
    before.join()  # enough history to train on
    during = steady_load(settings, 8_000, seed=2)
    mark = worker.log.stat().st_size
    info = retrain(settings, PARAMS, master="local[2]", reason="test")
    during.join()
    worker.wait_logged(f"swapped to version {info.id}", after=mark)  # its commits can reach the end mid-swap
    wait_until_committed(settings, settings.topic("observations"), worker)
    worker.stop()

    assert versions.active(settings).version.id == info.id
    states = worker_states(settings)
    assert counted(settings, states) == produced(settings)
    assert 0 < info.training_rows < sum(produced(settings).values()) and info.holdout_rows > 0 and info.validation_rmse is not None
    assert_matches(states, reference_on(settings, ModelStore(settings.model_store).load(info.id), info.training_end))


def test_rollback_to_an_older_version_restores_its_vectors_plus_the_replay_after_its_offsets(
    live: tuple[Settings, WorkerProcess],
) -> None:
    settings, worker = live
    if settings.engine == "faust":  # (the suite's time: a rollback is a swap, which the test above runs on both)
        pytest.skip("a rollback is the engines' shared swap (streams/swap.py): judged on the kafka engine")
    worker.wait_ready()  # the rollback is a swap it logs
    steady_load(settings, 2_000, seed=3).join()
    warm = WarmJob(settings, PARAMS, master="local[2]")  # the controller's way: one session kept
    try:
        older = warm("older")
        steady_load(settings, 1_000, seed=10).join()
        warm.activate = False
        saved = warm("saved for a person to activate")  # `velox retrain --watch --no-activate`
        assert versions.active(settings).version.id == older.id
        assert saved.id in {info.id for info in ModelStore(settings.model_store).list()}
        warm.activate = True
        newer = warm("newer")
    finally:
        warm.close()
    assert newer.id != older.id and versions.active(settings).version.id == newer.id
    steady_load(settings, 1_000, seed=4).join()
    mark = worker.log.stat().st_size
    versions.activate(settings, older.id, reason="rollback")
    steady_load(settings, 1_000, seed=5).join()
    worker.wait_logged(f"swapped to version {older.id}", after=mark)  # its commits can reach the end mid-swap
    wait_until_committed(settings, settings.topic("observations"), worker)
    worker.stop()

    states = worker_states(settings)
    assert {state.version for state in states.values()} == {older.id}
    assert counted(settings, states) == produced(settings)
    assert_matches(states, reference_on(settings, ModelStore(settings.model_store).load(older.id), older.training_end))
    assert "rollback" in Path(worker.log).read_text()


def save_bare(settings: Settings, users: np.ndarray | None = None) -> tuple[ModelVersion, dict[int, int]]:
    """Save the active θ (or the initial one) with no users (or ``users`` with random vectors) and
    training_end 0: a swap to it replays everything."""
    store = ModelStore(settings.model_store)
    active = versions.active(settings)
    trained = store.load(active.version.id) if active else versions.initial_version(settings)
    users = np.zeros(0, np.int64) if users is None else users
    vectors = np.random.default_rng(3).normal(0, 0.3, (len(users), trained.d)).astype(np.float32)
    bare = replace(trained, id=f"bare-{uuid.uuid4().hex[:6]}", user_ids=users, user_counts=np.full(len(users), 2),
                   user_vectors=vectors)
    start = {p: 0 for p in range(settings.partitions)}
    store.save(bare, VersionInfo(id=bare.id, created_at=time.time(), d=bare.d, training_end=start))
    return bare, start


def test_a_worker_killed_while_it_builds_a_version_beside_the_live_states_builds_it_again(
    live: tuple[Settings, WorkerProcess],
) -> None:
    settings, worker = live
    worker.wait_ready()  # it starts on the current version, then swaps
    steady_load(settings, 20_000, seed=6, per_second=None).join()
    bare, start = save_bare(settings)  # the shadow replays the whole topic, for seconds
    during = steady_load(settings, 3_000, seed=7)
    versions.activate(settings, bare.id, reason="rebuild from the start")
    worker.wait_logged(f"swapping to version {bare.id}", every=0.002)
    worker.kill9()
    assert f"swapped to version {bare.id}" not in Path(worker.log).read_text(), "killed too late: after the swap"
    worker.start()
    during.join()
    wait_until_committed(settings, settings.topic("observations"), worker)
    worker.stop()

    states = worker_states(settings)
    assert {state.version for state in states.values()} == {bare.id}
    assert counted(settings, states) == produced(settings)  # every event of the module, once
    assert_matches(states, reference_on(settings, bare, start))
    assert_item_totals_are_the_formula(settings, bare, start)  # the shadow's count, sent again after the kill


def test_while_a_swap_writes_a_partition_a_chunk_at_a_time_each_user_learns_on_the_version_of_their_record(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A worker in this process, so that a partition's 30 users take 8 chunks, each between two live
    # batches (a slice of a millisecond ends after one chunk). The version knows 80 of the log's 120
    # users, in shuffled rows, and 20 the log never names: each is written, once.
    monkeypatch.setattr(swap, "SWAP_CHUNK", 4)
    monkeypatch.setattr(swap, "SWAP_SLICE", 0.001)
    own = settings.replace(data=tmp_path, namespace=f"c{uuid.uuid4().hex[:8]}-", partitions=4, d=5, items=60,
                           worker_metrics_port=0)
    topics.ensure(own)
    worker = Worker(own)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        steady_load(own, 4_000, seed=8, per_second=None).join()
        known = np.random.default_rng(4).permutation([*range(80), *range(5_000, 5_020)])
        bare, start = save_bare(own, known)
        during = steady_load(own, 6_000, seed=9)
        versions.activate(own, bare.id, reason="chunks")
        during.join()
        deadline = time.monotonic() + 60
        while worker.swap.swapping or positions.lag(own, own.app_id, own.topic("observations")) > 0:
            assert thread.is_alive() and time.monotonic() < deadline, "the worker did not finish the swap"
            time.sleep(0.2)
    finally:
        worker.stop()
        thread.join(60)

    states = worker_states(own)
    assert {state.version for state in states.values()} == {bare.id}
    assert sum(state.count for state in states.values()) == 10_000 + int(bare.user_counts.sum())
    assert_matches(states, reference_on(own, bare, start))


def test_a_worker_behind_a_new_versions_training_end_counts_nothing_twice_and_keeps_every_item_rated(
    settings: Settings, tmp_path: Path,
) -> None:
    """The version comes first (a worker that was down, or slower than the job): the worker writes
    each user at the training end, then gets the events up to it, counted by the version already;
    their items are still the user's rated ones. The version's content model is learned with the
    feature function the settings name, from the items' attributes on the items topic."""
    own = settings.replace(data=tmp_path, namespace=f"b{uuid.uuid4().hex[:8]}-", partitions=2, d=5, items=60,
                           worker_metrics_port=0, holdout=0.2, item_features=CUSTOM_FEATURES)
    topics.ensure(own)
    items.save(own, [(item, {"title": "x" * (item + 1)}) for item in [*range(40), 100, 101]])  # 100, 101: never rated
    steady_load(own, 3_000, seed=8, per_second=None).join()
    info = retrain(own, PARAMS, master="local[2]", reason="before any worker")
    saved = ModelStore(own.model_store).load(info.id)
    model = saved.content
    assert model is not None and model.function == CUSTOM_FEATURES and len(model.columns) == 2
    assert saved.item_ids[saved.trained_items:].tolist() == [100, 101]  # described at the retrain: the worker learns on them
    worker = WorkerProcess(own)
    worker.start()
    try:
        wait_until_committed(own, own.topic("observations"), worker)
    finally:
        worker.stop()
    states = worker_states(own)
    assert sum(state.count for state in states.values()) == 3_000
    assert_matches(states, reference_on(own, ModelStore(own.model_store).load(info.id), info.training_end))
