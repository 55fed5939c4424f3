"""Three local brokers, each its own JVM (`velox kafka start --brokers 3`): Velox's topics get three
replicas with two in sync, a topic with fewer is reported, and stop and status cover them all.
The module's cluster is secured (`--secure`): SASL_SSL for clients and between brokers, TLS with
certificates both ways between the KRaft controllers, while the failure test runs on it."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import ConfigResource
from starlette.testclient import TestClient

from tests.streams.harness import (
    WorkerProcess,
    read_all,
    reference_states,
    wait_until_committed,
    worker_states,
)
from tests.streams.test_worker import assert_same_states
from velox.control import topics
from velox.kafka import clients, topic_admin
from velox.local.broker import LocalCluster, free_bootstrap
from velox.processes import is_zombie
from velox.schemas import observation
from velox.schemas.observation import Observation
from velox.serving.edge import Edge
from velox.serving.server import create_app
from velox.settings import Settings


@pytest.fixture(scope="module")
def cluster(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, LocalCluster]]:
    own = settings.replace(data=tmp_path_factory.mktemp("cluster"), bootstrap=free_bootstrap(ports=6), partitions=8)
    brokers = LocalCluster(own, brokers=3)
    brokers.start(secure=True)
    try:
        yield own.replace(bootstrap=brokers.bootstrap, kafka_config=brokers.nodes[0].secrets.client_properties), brokers
    finally:
        brokers.stop()


def replicas_and_insync(settings: Settings, name: str) -> tuple[set[int], str]:
    admin = clients.admin_client(settings)
    meta = admin.list_topics(name, timeout=30).topics[name]
    [described] = admin.describe_configs([ConfigResource("topic", name)]).values()
    return {len(p.replicas) for p in meta.partitions.values()}, described.result()["min.insync.replicas"].value


def test_every_topic_velox_makes_has_three_replicas_and_needs_two_in_sync(cluster) -> None:
    own, _ = cluster
    own = own.replace(namespace=f"c{uuid.uuid4().hex[:8]}-")
    topics.ensure(own)
    for name in (own.topic("observations"), own.topic("observations-dlq"), topics.changelog(own)):
        assert replicas_and_insync(own, name) == ({3}, "2"), name


def test_the_controllers_speak_tls_only_with_nodes_that_show_a_certificate_of_the_ca(cluster) -> None:
    _, brokers = cluster
    request = struct.pack(">hhih", 18, 0, 1, 1) + b"t"  # ApiVersions v0, correlation id 1, client "t"
    request = struct.pack(">i", len(request)) + request
    for node in brokers.nodes:
        host, port = node.host, node.port + 1
        context = ssl.create_default_context(cafile=str(node.secrets.ca))
        with socket.create_connection((host, port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:  # the CA's certificate for the host
                tls.sendall(request)
                with pytest.raises(ssl.SSLError, match="BAD_CERTIFICATE"):  # none of ours
                    tls.recv(64)
        with socket.create_connection((host, port), timeout=10) as raw:
            raw.sendall(request)
            assert raw.recv(64)[:1] == b"\x15"  # a TLS alert record, not a Kafka answer


def test_a_topic_with_fewer_replicas_than_configured_is_reported_in_one_line(
    cluster, caplog: pytest.LogCaptureFixture,
) -> None:
    own, _ = cluster
    name = f"thin-{uuid.uuid4().hex[:8]}"
    topic_admin.create_topics(own.replace(replication=1), {name: 2})
    assert replicas_and_insync(own, name) == ({1}, "1")
    with caplog.at_level(logging.WARNING, logger="velox.kafka"):
        topic_admin.create_topics(own, {name: 2})
    [line] = [r.getMessage() for r in caplog.records if r.name == "velox.kafka"]
    assert f"{name} (1)" in line and "fewer than 3 replicas" in line


def busiest_leader(settings: Settings, topic: str) -> int:
    """The node that leads the most partitions of ``topic``."""
    meta = clients.admin_client(settings).list_topics(topic, timeout=30).topics[topic]
    return Counter(p.leader for p in meta.partitions.values()).most_common(1)[0][0]


def active_controller(brokers: LocalCluster) -> int:
    """The KRaft quorum's leader, as a running node's quorum-state file says."""
    for node in brokers.nodes:
        if node.status().running:
            state = json.loads((node.log_dirs / "__cluster_metadata-0" / "quorum-state").read_text())
            if state.get("leaderId", -1) > 0:
                return int(state["leaderId"])
    raise AssertionError("no running node knows the quorum's leader")


def test_killing_the_busiest_broker_then_the_active_controller_loses_and_doubles_nothing(
    cluster, tmp_path: Path,
) -> None:
    """20,000 events produced steadily, predictions and observes asked throughout; kill -9 the broker
    leading the most observations partitions and restart it, then kill -9 the active controller.
    Every acknowledged event is applied exactly once, every prediction is answered, and observe
    says 202 only for what the cluster took."""
    base, brokers = cluster
    own = base.replace(namespace=f"k{uuid.uuid4().hex[:8]}-", data=tmp_path, worker_metrics_port=0, d=5, items=100)
    topic = own.topic("observations")
    topics.ensure(own)
    worker = WorkerProcess(own)
    worker.start()
    acked: list[tuple[int, int | None, float]] = []  # partition, offset (None: written, offset unknown), time
    failed: list[object] = []
    produced = threading.Event()

    def produce_steadily() -> None:
        producer = clients.producer(own)
        for n in range(20_000):
            seen = Observation(user=n % 500, item=n % 97, score=float(n % 5 + 1), time=float(n))
            clients.send(producer, topic, key=seen.key, value=observation.encode(seen),
                       on_delivery=lambda err, m: failed.append(err) if err else acked.append(
                           (m.partition(), m.offset(), observation.decode(m.value()).time)))
            producer.poll(0)
            time.sleep(0.001)
        assert producer.flush(120) == 0
        produced.set()

    thread = threading.Thread(target=produce_steadily)
    predictions: Counter[int] = Counter()
    observes: list[tuple[int, float, str | None]] = []  # status, the event's time, Retry-After
    recovered: dict[str, float] = {}
    edge = Edge.open(own)
    try:
        with TestClient(create_app(edge)) as client:
            def ask(seconds: float, after_kill: str | None = None) -> None:
                killed, end = time.monotonic(), time.monotonic() + seconds
                while time.monotonic() < end or (after_kill and after_kill not in recovered):
                    answer = client.get("/v1/models/default/predict", params={"user": len(observes) % 500, "item": 3})
                    predictions[answer.status_code] += 1
                    at = 1e9 + len(observes)
                    sent = client.post("/v1/models/default/observe", json={"user": 7, "item": 1, "score": 4, "time": at})
                    observes.append((sent.status_code, at, sent.headers.get("retry-after")))
                    if after_kill and sent.status_code == 202 and after_kill not in recovered:
                        recovered[after_kill] = time.monotonic() - killed
                    assert time.monotonic() < end + 120, f"no observe taken within 120 s of the {after_kill} kill"
                    time.sleep(0.05)

            thread.start()
            ask(4)
            leader = busiest_leader(own, topic)
            os.kill(brokers.nodes[leader - 1].status().pid, signal.SIGKILL)
            ask(4, after_kill=f"leader (node {leader})")
            brokers.nodes[leader - 1].start()
            ask(3)
            controller = active_controller(brokers)
            os.kill(brokers.nodes[controller - 1].status().pid, signal.SIGKILL)
            ask(4, after_kill=f"controller (node {controller})")
            brokers.nodes[controller - 1].start()
            thread.join(timeout=300)
            assert produced.is_set() and not failed, failed[:3]
            wait_until_committed(own, topic, worker, timeout=300)
    finally:
        edge.close()
        worker.stop()
        for node in brokers.nodes:  # the module's other tests need all three
            node.start()

    print(f"recovery (kill to the first observe taken): {recovered}; predictions {dict(predictions)}; "
          f"observes {Counter(status for status, _, _ in observes)}")
    assert not [code for code in predictions if code >= 500], predictions
    assert {status for status, _, _ in observes} <= {202, 503}
    assert all(retry for status, _, retry in observes if status == 503)
    messages = read_all(own, topic)
    times = [observation.decode(m.value()).time for m in messages]
    assert len(times) == len(set(times)), "an event was written twice"
    written = {at: (m.partition(), m.offset()) for at, m in zip(times, messages)}
    # A retry of an event the broker had already written comes back DUPLICATE_SEQUENCE_NUMBER, which librdkafka
    # reports as delivered with no offset: such an event must be in the log all the same.
    missing = [(partition, offset, at) for partition, offset, at in acked
               if at not in written or written[at][0] != partition or offset not in (None, written[at][1])]
    assert not missing, missing[:3]
    assert {at for status, at, _ in observes if status == 202} <= set(times)
    # A 503 is an outcome the edge could not learn in time: the cluster may have taken it after all.
    taken = {at for _, at, _ in observes} & set(times)
    assert len(messages) == len(acked) + len(taken)
    print(f"observes answered 503 but taken later: {sum(at in taken for status, at, _ in observes if status == 503)}")
    assert_same_states(worker_states(own), reference_states(own, topic))


# Last in the module: it stops the module's cluster (the fixture's stop then finds nothing running).
def test_status_covers_every_broker_and_stop_ends_them_all(cluster) -> None:
    own, brokers = cluster
    pids = [status.pid for status in brokers.status()]
    where = ["--bootstrap", brokers.nodes[0].address, "--data", str(own.data)]
    try:
        status = subprocess.run([sys.executable, "-m", "velox.cli", *where, "kafka", "status"],
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and status.stdout.count("kafka running") == 3, status.stdout
    finally:
        stopped = subprocess.run([sys.executable, "-m", "velox.cli", *where, "kafka", "stop"],
                                 capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert all(not Path(f"/proc/{pid}").exists() or is_zombie(pid) for pid in pids)
