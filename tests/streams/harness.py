"""A real `velox worker` process, its RocksDB files, and the sequential replay it must equal."""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np
from confluent_kafka import Message, Producer, TopicPartition

from velox import processes
from velox.control.item_corrections import ItemCorrectionsFollower
from velox.control.versions import initial_version
from velox.kafka import clients, positions
from velox.model.corrections import ItemCorrections
from velox.model.learner import Learner, event_of, make_rule
from velox.model.version import ModelVersion
from velox.schemas import ids, observation, user_state
from velox.schemas.feedback import Feedback
from velox.schemas.user_state import UserState
from velox.settings import Settings
from velox.state.layout import table_path
from velox.state.partition_store import PartitionStore


class VeloxProcess:
    """`velox COMMAND` with the given settings; its output goes to ``<data>/COMMAND.log``."""

    command = ""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.log = settings.data / f"{self.command}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, \
            f"velox {self.command} (pid {self.process.pid}) is running: a second one would be left behind"
        self.process = processes.spawn(self.settings, self.log, self.command)

    def stop(self) -> None:
        if self.process is not None:
            processes.stop(self.process)
        self.process = None


class WorkerProcess(VeloxProcess):
    command = "worker"

    def start(self) -> None:
        self.log_start = self.log.stat().st_size if self.log.exists() else 0  # the log is appended to
        super().start()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the worker started last owns partitions (a Faust worker takes seconds to start)."""
        self.wait_logged("ready: partitions", timeout=timeout)

    def wait_logged(self, words: str, after: int | None = None, timeout: float = 60.0, every: float = 0.1) -> None:
        """Until the log has ``words`` past byte ``after`` (default: where the worker started last)."""
        deadline = time.monotonic() + timeout
        while words.encode() not in self.log.read_bytes()[self.log_start if after is None else after:]:
            self.assert_alive()
            assert time.monotonic() < deadline, f"the worker did not log {words!r} in {timeout} s; see {self.log}"
            time.sleep(every)

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def assert_alive(self) -> None:
        assert self.process is not None and self.process.poll() is None, f"worker died; see {self.log}"


def kill9_during(worker: WorkerProcess, send: Callable[[], None], kills: int, rng: random.Random,
                 between: tuple[float, float]) -> None:
    """Run ``send`` in a thread; meanwhile kill -9 the worker ``kills`` times, restarting it each time."""
    producer = threading.Thread(target=send)
    producer.start()
    try:
        for _ in range(kills):
            time.sleep(rng.uniform(*between))
            worker.kill9()
            worker.start()
    finally:
        producer.join()


def session_producer(settings: Settings, partitioner: str = "murmur2_random") -> Producer:
    """One producer per cluster, credentials and partitioner for the session: a new idempotent
    producer's first delivery waits half a second (librdkafka asks for its producer id on a 500 ms
    timer when no connection is up yet), which every batch of a steady load paid."""
    return _producer(settings.bootstrap, settings.kafka_config, partitioner)


@lru_cache(maxsize=16)
def _producer(bootstrap: str, kafka_config: Path | None, partitioner: str) -> Producer:
    return clients.producer(Settings(bootstrap=bootstrap, kafka_config=kafka_config), partitioner=partitioner)


def forget_producers() -> None:
    """Close the session's producers (before their broker stops: they would try to reconnect to it)."""
    _producer.cache_clear()


def produce(settings: Settings, topic: str, messages: Iterable[tuple[bytes | None, bytes | None]]) -> None:
    producer = session_producer(settings)
    failures: list[object] = []
    for key, value in messages:
        producer.produce(topic, key=key, value=value, on_delivery=lambda err, _m: err and failures.append(err))
        producer.poll(0)
    assert producer.flush(60) == 0 and not failures, failures


def wait_until_committed(settings: Settings, topic: str, worker: WorkerProcess, timeout: float = 120.0) -> None:
    """Until the worker's group has committed every partition of ``topic`` up to its end."""
    deadline = time.monotonic() + timeout
    while positions.lag(settings, settings.app_id, topic) > 0:
        worker.assert_alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"worker did not catch up with {topic} in {timeout} s; see {worker.log}")
        time.sleep(0.2)


def wait_until_applied(settings: Settings, count: int, worker: WorkerProcess, timeout: float = 180.0) -> None:
    """Until the worker's states hold ``count`` observations in all, read beside it.

    Not its group's commits, which follow the states by up to a commit interval: what a takeover
    must get right is what the states hold."""
    deadline = time.monotonic() + timeout
    while sum(state.count for state in worker_states(settings).values()) < count:
        worker.assert_alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"worker did not apply {count} observations in {timeout} s; see {worker.log}")
        time.sleep(0.2)


def read_all(settings: Settings, topic: str) -> list[Message]:
    """Every message of ``topic`` now, in partition then offset order."""
    ends = positions.end_offsets(settings, topic)
    consumer = clients.consumer(settings, group=f"velox-tests-reader-{time.monotonic_ns()}")
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    messages: list[Message] = []
    try:
        deadline = time.monotonic() + 60
        # Up to the end by position, not by count: transaction markers and aborted messages take
        # offsets that a read-committed consumer never returns.
        while time.monotonic() < deadline and any(
            tp.offset < ends[tp.partition]
            for tp in consumer.position([TopicPartition(topic, p) for p, end in ends.items() if end > 0])
        ):
            messages += [m for m in consumer.consume(5000, timeout=0.2) if m.error() is None]
    finally:
        consumer.close()
    return sorted(messages, key=lambda m: (m.partition(), m.offset()))


def reference_states(settings: Settings, topic: str) -> dict[int | str, UserState]:
    """The user states of replaying ``topic`` sequentially in this process, as the events count,
    by user id as ``worker_states`` gives them."""
    rule = make_rule(**settings.rule_params())
    learner = Learner(initial_version(settings), rule)
    feedback = Feedback(settings.implicit, settings.confidences)
    states: dict[int | str, UserState] = {}
    for message in read_all(settings, topic):
        seen = observation.counted(message.key(), message.value(), message.partition(), settings.partitions,
                                   feedback.target)
        if seen is not None:
            user = ids.given(seen.key.decode())
            event = event_of(seen, message.offset(), feedback)
            states[user], _ = learner.observe(states.get(user), event.user, event.item, event.score, event.offset,
                                              event.confidence)
    return states


def worker_states(settings: Settings) -> dict[int | str, UserState]:
    """The records in a worker's RocksDB files, one DB per table partition (read-only: beside a running worker too)."""
    states: dict[int | str, UserState] = {}
    for partition in range(settings.partitions):
        path = table_path(settings.data, partition)
        if path.exists():
            store = PartitionStore(path, read_only=True)
            try:
                states.update((ids.given(key.decode()), user_state.decode(value)) for key, value in store.records())
            finally:
                store.close()
    return states


def assert_item_totals_are_the_formula(settings: Settings, version: ModelVersion,
                                       training_end: dict[int, int] | None = None) -> None:
    """The item totals the workers published on ``version`` equal the formula over the log: each event
    counted from the version's training end, once (a dead letter never, a moved event where it went)."""
    expected = ItemCorrections(version)
    counted = [seen for m in read_all(settings, settings.topic("observations"))
               if m.offset() >= (training_end or {}).get(m.partition(), 0)
               and (seen := observation.counted(m.key(), m.value(), m.partition(), settings.partitions))]
    expected.add(*np.array([(seen.user_code, seen.item_code, seen.score) for seen in counted]).T)
    follower = ItemCorrectionsFollower(settings)
    try:
        deadline = time.monotonic() + 30  # the workers' last checkpoint publishes them
        while (version.id not in follower.totals or follower.totals[version.id].events < len(counted)) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        with follower.lock:
            totals = follower.totals[version.id]
            codes = expected.totals()[0]
            assert len(totals) == len(expected) and totals.events == expected.events == len(counted)
            assert [totals.count_of(code) for code in codes.tolist()] == [expected.count_of(code) for code in codes.tolist()]
            np.testing.assert_allclose(totals.values(codes, 1.0), expected.values(codes, 1.0), atol=1e-9)
    finally:
        follower.close()
