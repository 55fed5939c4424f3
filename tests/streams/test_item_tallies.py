"""A partition's item totals: what a tally counts and sends, and a worker counting the log again
when ``item-corrections`` has lost them."""

from __future__ import annotations

import uuid

import numpy as np
from confluent_kafka import TopicPartition

from tests.streams.harness import (
    WorkerProcess,
    assert_item_totals_are_the_formula,
    produce,
    wait_until_committed,
)
from tests.streams.test_worker import event
from velox.control import item_corrections, topics
from velox.control.versions import initial_version
from velox.kafka import clients, positions
from velox.model.learner import Event
from velox.model.synthetic import planted
from velox.settings import Settings
from velox.streams.item_tallies import Tally


def events(offsets: range, items: list[int]) -> list[Event]:
    return [Event(b"1", 1, item, 4.0, offset) for offset, item in zip(offsets, items)]


def test_a_tally_counts_from_the_training_end_and_skips_what_it_counted_before() -> None:
    tally = Tally(planted(users=3, items=5, d=2), partition=0, start=10)
    tally.count(events(range(5, 15), [0] * 10), {})  # 5-9: before the training end
    assert tally.seen.count_of(0) == 5 and tally.through == 15
    tally.count(events(range(12, 18), [1] * 6), {})  # 12-14: a replay after a crash
    assert tally.seen.count_of(1) == 3 and tally.through == 18


def test_a_tally_sends_a_snapshot_then_the_changed_items_until_they_outnumber_it() -> None:
    tally = Tally(planted(users=3, items=50, d=2), partition=2, start=0)
    tally.count(events(range(40), list(range(40))), {})
    first, full = tally.message()
    assert full and len(first.codes) == 40 and (first.partition, first.through) == (2, 40)
    tally.count(events(range(40, 45), [3, 3, 7, 7, 7]), {})
    delta, full = tally.message()
    assert not full and sorted(delta.codes.tolist()) == [3, 7]
    assert dict(zip(delta.codes.tolist(), delta.counts.tolist())) == {3: 3, 7: 4}  # cumulative, not the change
    assert not tally.due()
    sent = 2
    for at in range(45, 85):  # one item a checkpoint: once the items sent outnumber the totals, a snapshot
        tally.count(events(range(at, at + 1), [at - 45]), {})
        message, full = tally.message()
        if full:
            break
        sent += 1
    assert full and len(message.codes) == 40 and sent == 40


def test_a_worker_counts_the_log_again_when_the_topic_has_lost_its_totals(settings: Settings, tmp_path) -> None:
    own = settings.replace(data=tmp_path, namespace=f"i{uuid.uuid4().hex[:8]}-", partitions=2, d=4, items=30,
                           worker_metrics_port=0)
    topics.ensure(own)
    rng = np.random.default_rng(7)
    observations = own.topic("observations")
    produce(own, observations, [event(int(u), int(i), float(s)) for u, i, s in
                                zip(rng.integers(0, 50, 400), rng.integers(0, 30, 400), rng.integers(1, 6, 400))])
    worker = WorkerProcess(own)
    worker.start()
    try:
        wait_until_committed(own, observations, worker)
        worker.stop()
        name = item_corrections.topic(own)  # past the retention: every message gone
        ends = positions.end_offsets(own, name)
        admin = clients.admin_client(own)
        for future in admin.delete_records([TopicPartition(name, p, end) for p, end in ends.items()]).values():
            future.result()
        worker.start()
        worker.wait_logged("of the log again")
        produce(own, observations, [event(int(u), int(i), 3.0) for u, i in
                                    zip(rng.integers(0, 50, 100), rng.integers(0, 30, 100))])
        wait_until_committed(own, observations, worker)
    finally:
        worker.stop()
    assert_item_totals_are_the_formula(own, initial_version(own))
