"""The worker's batch histogram exposes what prometheus_client's own histogram would."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from velox.streams.worker_metrics import BatchHistogram


def test_a_batch_histogram_exposes_the_same_samples_as_one_observe_per_value() -> None:
    buckets = (0.001, 0.005, 0.01, 0.05, 1.0)
    values = np.concatenate([np.random.default_rng(1).exponential(0.01, 500), [0.0, 0.005, 1.0, 7.5]])
    mine, theirs = CollectorRegistry(), CollectorRegistry()
    batched = BatchHistogram("t_seconds", "doc", buckets, registry=mine)
    single = Histogram("t_seconds", "doc", buckets=buckets, registry=theirs)
    batched.observe_many(values[:200])
    batched.observe_many(values[200:])
    for value in values.tolist():
        single.observe(value)

    def samples(registry: CollectorRegistry) -> dict[str, float]:
        lines = generate_latest(registry).decode().splitlines()
        return {name: float(value) for name, value in (line.rsplit(" ", 1) for line in lines
                                                      if line.startswith("t_seconds") and "_created" not in line)}

    got, want = samples(mine), samples(theirs)
    assert got.keys() == want.keys() and len(got) == len(buckets) + 3  # buckets, +Inf, count, sum
    assert abs(got.pop("t_seconds_sum") - want.pop("t_seconds_sum")) < 1e-9
    assert got == want
