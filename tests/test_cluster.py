"""Three local brokers, each its own JVM (`velox kafka start --brokers 3`): Velox's topics get three
replicas with two in sync, a topic with fewer is reported, and stop and status cover them all."""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import ConfigResource

from velox import kafka, topics
from velox.broker import LocalCluster, free_bootstrap
from velox.processes import is_zombie
from velox.settings import Settings


@pytest.fixture(scope="module")
def cluster(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, LocalCluster]]:
    own = settings.replace(data=tmp_path_factory.mktemp("cluster"), bootstrap=free_bootstrap(ports=6), partitions=8)
    brokers = LocalCluster(own, brokers=3)
    brokers.start()
    try:
        yield own.replace(bootstrap=brokers.bootstrap), brokers
    finally:
        brokers.stop()


def replicas_and_insync(settings: Settings, name: str) -> tuple[set[int], str]:
    admin = kafka.admin_client(settings)
    meta = admin.list_topics(name, timeout=30).topics[name]
    [described] = admin.describe_configs([ConfigResource("topic", name)]).values()
    return {len(p.replicas) for p in meta.partitions.values()}, described.result()["min.insync.replicas"].value


def test_every_topic_velox_makes_has_three_replicas_and_needs_two_in_sync(cluster) -> None:
    own, _ = cluster
    own = own.replace(namespace=f"c{uuid.uuid4().hex[:8]}-")
    topics.ensure(own)
    for name in (own.topic("observations"), own.topic("observations-dlq"), topics.changelog(own)):
        assert replicas_and_insync(own, name) == ({3}, "2"), name


def test_a_topic_with_fewer_replicas_than_configured_is_reported_in_one_line(
    cluster, caplog: pytest.LogCaptureFixture,
) -> None:
    own, _ = cluster
    name = f"thin-{uuid.uuid4().hex[:8]}"
    kafka.create_topics(own.replace(replication=1), {name: 2})
    assert replicas_and_insync(own, name) == ({1}, "1")
    with caplog.at_level(logging.WARNING, logger="velox.kafka"):
        kafka.create_topics(own, {name: 2})
    [line] = [r.getMessage() for r in caplog.records if r.name == "velox.kafka"]
    assert f"{name} (1)" in line and "fewer than 3 replicas" in line


def test_status_covers_every_broker_and_stop_ends_them_all(settings: Settings, tmp_path: Path) -> None:
    own = settings.replace(data=tmp_path, bootstrap=free_bootstrap(ports=6))
    brokers = LocalCluster(own, brokers=3)
    brokers.start()
    pids = [status.pid for status in brokers.status()]
    try:
        status = subprocess.run([sys.executable, "-m", "velox.cli", "--bootstrap", own.bootstrap, "--data",
                                 str(tmp_path), "kafka", "status"], capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and status.stdout.count("kafka running") == 3, status.stdout
    finally:
        stopped = subprocess.run([sys.executable, "-m", "velox.cli", "--bootstrap", own.bootstrap, "--data",
                                  str(tmp_path), "kafka", "stop"], capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert all(not Path(f"/proc/{pid}").exists() or is_zombie(pid) for pid in pids)
