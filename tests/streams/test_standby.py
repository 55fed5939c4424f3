"""Two Faust workers with standby replicas: one killed with -9 under load, the other takes over from its copies."""

from __future__ import annotations

import random
import re
import threading
import time
from pathlib import Path

from tests.streams.harness import (
    WorkerProcess,
    produce,
    reference_states,
    wait_until_applied,
    worker_states,
)
from tests.streams.test_worker import assert_same_states, event, worker_settings
from velox.control import topics
from velox.kafka import positions
from velox.settings import Settings
from velox.state.layout import table_path
from velox.state.partition_store import PartitionStore


def owned(worker: WorkerProcess) -> list[int]:
    """The partitions the worker's log last said it owns."""
    found = re.findall(r"owning \[([\d, ]*)\]", worker.log.read_text())
    return [int(p) for p in found[-1].split(", ") if p] if found else []


def changelog_offset(settings: Settings, partition: int) -> int:
    """How far a worker's copy of a partition reflects the changelog (read beside the worker that writes it)."""
    store = PartitionStore(table_path(settings.data, partition), read_only=True)
    try:
        return store.changelog_offset
    finally:
        store.close()


def test_a_killed_faust_worker_is_replaced_by_the_other_from_its_standby_copies(
    settings: Settings, tmp_path: Path,
) -> None:
    base = worker_settings(settings, tmp_path / "a", engine="faust", standby_replicas=1, worker_id="worker-a")
    first, second = WorkerProcess(base), WorkerProcess(base.replace(data=tmp_path / "b", worker_id="worker-b"))
    source = base.topic("observations")
    rng = random.Random(11)
    load = [event(rng.randrange(300), rng.randrange(200), round(rng.uniform(0.5, 5), 1)) for _ in range(20_000)]
    first.start()
    second.start()
    try:
        deadline = time.monotonic() + 90
        while not (owned(first) and owned(second)):  # the group settled with both
            first.assert_alive()
            second.assert_alive()
            assert time.monotonic() < deadline, f"the two workers did not share the partitions; see {first.log}"
            time.sleep(0.5)
        moving = owned(first)

        def steady() -> None:
            for start in range(0, len(load), 1_000):
                produce(base, source, load[start:start + 1_000])
                time.sleep(0.25)

        producer = threading.Thread(target=steady)
        producer.start()
        time.sleep(2.5)
        # The second worker's copies of the first's partitions follow the changelog as it grows.
        ends = positions.end_offsets(base, topics.changelog(base))
        deadline = time.monotonic() + 30
        while any(changelog_offset(second.settings, p) < ends[p] - 1 for p in moving if ends[p] > 0):
            assert time.monotonic() < deadline, f"no standby copy of partitions {moving} followed the changelog"
            time.sleep(0.2)
        first.kill9()
        producer.join()
        wait_until_applied(second.settings, len(load), second)
        # The group can rebalance again after the takeover (the log says "owning []" between a
        # revoke and the next assignment), so ownership is waited for, not read once.
        deadline = time.monotonic() + 60
        while set(owned(second)) != set(range(base.partitions)):
            second.assert_alive()
            assert time.monotonic() < deadline, f"the second worker does not own every partition; see {second.log}"
            time.sleep(0.5)
    finally:
        first.stop()
        second.stop()
    reference = reference_states(base, source)
    assert sum(state.count for state in reference.values()) == len(load)
    assert_same_states(worker_states(second.settings), reference)
    # The copies that became active were brought to the changelog's end by our reader, not record by record by Faust's.
    taken = re.findall(r"partitions \[([\d, ]*)\]: \d+ changelog records recovered", second.log.read_text())
    assert {int(p) for p in taken[-1].split(", ")} == set(moving), taken
