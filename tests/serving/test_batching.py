"""Adaptive batching of top-k: concurrent requests share a product, answers unchanged, size AIMD-adapted."""

from __future__ import annotations

import asyncio

import numpy as np

from velox.model.top_k import top_k
from velox.model.version import random_version
from velox.serving.batching import TopKBatcher


def test_concurrent_requests_are_answered_as_alone_in_few_batches_and_the_limit_grows() -> None:
    version = random_version(500, 8, seed=2)
    weights = np.random.default_rng(3).normal(size=(10, 8)).astype(np.float32)
    batcher = TopKBatcher(limit=4)

    async def ask_all() -> list:
        return await asyncio.gather(*(batcher.top_k(version, w, 5, slo_s=20.0) for w in weights))

    answers = asyncio.run(ask_all())
    assert [a.items for a in answers] == [top_k(version, w, 5).items for w in weights]
    assert batcher.limit.size == 4 + 3  # three batches (4, 5, then 1), each within half the objective: +1 each


def test_a_batch_over_the_target_shrinks_the_limit_by_a_tenth() -> None:
    version = random_version(500, 8, seed=2)
    batcher = TopKBatcher(limit=20)

    async def ask() -> None:
        await asyncio.gather(*(batcher.top_k(version, version.mean_user, 3, slo_s=0.0) for _ in range(20)))

    asyncio.run(ask())
    assert batcher.limit.size == 18
