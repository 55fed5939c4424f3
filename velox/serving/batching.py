"""Adaptive batching of full-catalog top-k: requests that arrive together share one matrix product.

(Container calls are batched the same way: ``velox.serving.container_client``.)

A request queues its weights and waits; the first one in an empty queue schedules a flush on
the event loop's next turn, so every request already being handled joins it. The batch size
limit is adapted as in Clipper (AIMD): one more while a batch is computed within its target
(half the tightest latency objective among its requests: the model's, or an app's), a tenth
less as soon as one is not.
"""

from __future__ import annotations

import asyncio
import time
from typing import NamedTuple

import numpy as np
from prometheus_client import Histogram

from velox.model.top_k import TopK, top_k_many
from velox.model.version import ModelVersion

BATCH_SIZE = Histogram("velox_edge_top_k_batch_size", "Top-k requests scored in one matrix product.",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128))


class Request(NamedTuple):
    version: ModelVersion
    w: np.ndarray
    k: int
    slo_s: float
    answer: asyncio.Future[TopK]


class AdaptiveLimit:
    """Clipper's batch size (AIMD): one more while a batch is computed within its target, half the
    tightest objective among its requests; a tenth less as soon as one is not."""

    def __init__(self, size: int = 8, ceiling: int = 256) -> None:
        self.size, self.ceiling = size, ceiling

    def observe(self, elapsed: float, slo_s: float) -> None:
        if elapsed <= slo_s / 2:
            self.size = min(self.size + 1, self.ceiling)
        else:
            self.size = max(int(self.size * 0.9), 1)


class TopKBatcher:
    def __init__(self, limit: int = 8, ceiling: int = 256) -> None:
        self.limit = AdaptiveLimit(limit, ceiling)
        self.queue: list[Request] = []

    async def top_k(self, version: ModelVersion, w: np.ndarray, k: int, slo_s: float) -> TopK:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[TopK] = loop.create_future()
        if not self.queue:
            loop.call_soon(self._flush)
        self.queue.append(Request(version, w, k, slo_s, answer))
        return await answer

    def _flush(self) -> None:
        batch, self.queue = self.queue[:self.limit.size], self.queue[self.limit.size:]
        if self.queue:
            asyncio.get_running_loop().call_soon(self._flush)
        started = time.perf_counter()
        for version in {id(r.version): r.version for r in batch}.values():  # a swap may mix two versions
            same = [r for r in batch if r.version is version]
            answers = top_k_many(version, np.stack([r.w for r in same]), [r.k for r in same])
            for request, answer in zip(same, answers):
                if not request.answer.done():
                    request.answer.set_result(answer)
        BATCH_SIZE.observe(len(batch))
        self.limit.observe(time.perf_counter() - started, min(r.slo_s for r in batch))
