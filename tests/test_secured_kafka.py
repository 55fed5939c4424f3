"""Velox on a secured broker (SASL_SSL, SCRAM-SHA-512, a throwaway CA): every client gets its
credentials from VELOX_KAFKA_CONFIG, Spark's Kafka source too; wrong ones stop every process
with one line that names the broker and the refusal, having written nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.streams.harness import forget_producers, produce, worker_states
from tests.streams.test_worker import event
from velox.batch import job
from velox.batch.train import spark_session
from velox.errors import KafkaUnreachable
from velox.kafka import client_config, clients, positions, topic_admin
from velox.local import jars
from velox.local.broker import LocalBroker, free_bootstrap
from velox.schemas import observation
from velox.schemas.observation import Observation
from velox.settings import Settings

# py4j (Spark's gateway) leaves sockets for the garbage collector; nothing of ours.
pytestmark = pytest.mark.filterwarnings("ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="module")
def secured(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A secured broker of its own; the settings its clients need (its credentials file named)."""
    broker = LocalBroker(settings.replace(data=tmp_path_factory.mktemp("secured"), bootstrap=free_bootstrap(),
                                          partitions=2, worker_metrics_port=0))
    broker.start(secure=True)
    try:
        yield broker.client_settings
    finally:
        forget_producers()
        broker.stop()


def velox(settings: Settings, *args: str, log: Path) -> subprocess.Popen[bytes]:
    """The command in a session of its own, as from a terminal."""
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "velox.cli", *args], env={**os.environ, **settings.to_env()},
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def test_the_broker_refuses_a_client_without_credentials(secured: Settings) -> None:
    plain = secured.replace(kafka_config=None)
    with pytest.raises(KafkaUnreachable, match=f"Kafka at {secured.bootstrap}"):
        clients.metadata(plain, clients.admin_client(plain), timeout=3)  # (it closes the connection: no refusal to name)
    assert client_config.properties(secured.kafka_config)["security.protocol"] == "SASL_SSL"


def test_with_a_wrong_password_every_process_exits_with_one_line_naming_the_broker_and_writes_nothing(
    secured: Settings, tmp_path: Path,
) -> None:
    assert secured.kafka_config is not None
    wrong = tmp_path / "wrong.properties"
    wrong.write_text("".join(line if not line.startswith("sasl.password=") else "sasl.password=not-it\n"
                             for line in secured.kafka_config.read_text().splitlines(keepends=True)))
    own = secured.replace(kafka_config=wrong, data=tmp_path / "data", namespace=f"w{uuid.uuid4().hex[:8]}-")
    commands = {"load": ("load", "movielens"), "worker": ("worker",), "serve": ("serve", "--port", "0"),
                "retrain": ("retrain",)}
    started = {name: velox(own, *args, log=tmp_path / f"{name}.log") for name, args in commands.items()}
    for name, process in started.items():
        assert process.wait(timeout=180) == 1, (tmp_path / f"{name}.log").read_text()[-2000:]
        errors = [line for line in (tmp_path / f"{name}.log").read_text().splitlines() if " velox ERROR " in line]
        assert len(errors) == 1, errors
        assert f"Kafka at {own.bootstrap} did not answer" in errors[0] and "Authentication failed" in errors[0]
    topics = clients.admin_client(secured).list_topics(timeout=30).topics
    assert not [name for name in topics if name.startswith(own.namespace)]
    data = tmp_path / "data"
    written = [p for p in data.rglob("*") if p.is_file() and p.stat().st_size] if data.exists() else []
    assert written == [], written  # (the retrain's lock file may be there, empty)


def test_velox_up_runs_the_whole_loop_on_the_secured_broker(secured: Settings, tmp_path: Path) -> None:
    """Load, the first retrain, the worker, the edge, observe; then the terminal closes (SIGHUP to every
    process of its session) and each stops cleanly. (Spark's Kafka source: the test below.)"""
    own = secured.replace(edge_port=int(free_bootstrap().split(":")[1]), namespace=f"s{uuid.uuid4().hex[:8]}-")
    up = velox(own, "up", log=tmp_path / "up.log")
    model = f"{own.edge_url}/v1/models/default"
    try:
        deadline, answer = time.monotonic() + 300, None
        while answer is None or answer["version"].startswith("initial-"):
            assert up.poll() is None and time.monotonic() < deadline, (tmp_path / "up.log").read_text()[-3000:]
            try:
                answer = httpx.get(f"{model}/predict", params={"user": 1, "item": 2}, timeout=5).json()
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(1)
        for item in range(10, 15):
            accepted = httpx.post(f"{model}/observe", json={"user": 1, "item": item, "score": 5.0}, timeout=10)
            assert accepted.status_code == 202, accepted.text
        while httpx.get(f"{model}/predict", params={"user": 1, "item": 2}, timeout=5).json()["score"] == answer["score"]:
            assert time.monotonic() < deadline, "five 5.0 ratings did not move the score"
            time.sleep(0.2)
    finally:
        os.killpg(up.pid, signal.SIGHUP)
        assert up.wait(timeout=120) == 0, (tmp_path / "up.log").read_text()[-3000:]
    text = (tmp_path / "up.log").read_text()
    assert "worker stopped (exit 0)" in text and "controller stopped (exit 0)" in text, text[-3000:]
    assert positions.end_offsets(own, own.topic("observations")) and \
        sum(positions.end_offsets(own, own.topic("observations")).values()) == 1501 + 5


def test_sparks_kafka_source_reads_with_the_same_credentials_what_the_driver_reads(secured: Settings) -> None:
    """The retrain's read when its log is over ``VELOX_DRIVER_ROWS`` (every step in Spark)."""
    own = secured.replace(namespace=f"k{uuid.uuid4().hex[:8]}-")
    topic = own.topic("observations")
    topic_admin.create_topics(own, {topic: 2})
    produce(own, topic, [(e.key, observation.encode(e)) for e in (
        Observation(user=user, item=item, score=3.0, time=1.7e9) for user in range(20) for item in range(5))])
    end = positions.end_offsets(own, topic)
    spark = spark_session("local[2]", jars=jars.fetch(jars.SPARK_KAFKA, own.cache))
    try:
        in_spark = job.read_kafka(spark, own, topic, {}, end).toArrow()
    finally:
        spark.stop()
    on_driver = job.read_on_driver(own, topic, {}, end)
    assert in_spark.num_rows == 100
    assert in_spark.sort_by([("partition", "ascending"), ("offset", "ascending")]).equals(
        on_driver.sort_by([("partition", "ascending"), ("offset", "ascending")]))


def test_the_faust_engine_reads_its_credentials_from_the_same_file(secured: Settings, tmp_path: Path) -> None:
    own = secured.replace(data=tmp_path, namespace=f"f{uuid.uuid4().hex[:8]}-", engine="faust")
    worker = velox(own, "worker", log=tmp_path / "worker.log")
    source = own.topic("observations")
    try:
        deadline = time.monotonic() + 90
        while "ready: partitions" not in (tmp_path / "worker.log").read_text():
            assert worker.poll() is None and time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.2)
        produce(own, source, [event(7, item, 4.0) for item in range(5)])
        while positions.lag(own, own.app_id, source) > 0:
            assert worker.poll() is None and time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, (tmp_path / "worker.log").read_text()[-3000:]
    assert worker_states(own)[7].count == 5
