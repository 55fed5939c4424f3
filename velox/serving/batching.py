"""Adaptive batching of full-catalog top-k: requests that arrive together share one matrix product.

A request queues its weights and waits; the first one in an empty queue schedules a flush on
the event loop's next turn, so every request already being handled joins it. The batch size
limit is adapted as in Clipper (AIMD): one more while a batch is computed within the target
(half the latency objective), a tenth less as soon as one is not.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
from prometheus_client import Histogram

from velox.model.top_k import TopK, top_k_many
from velox.model.version import ModelVersion

BATCH_SIZE = Histogram("velox_edge_top_k_batch_size", "Top-k requests scored in one matrix product.",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128))


class TopKBatcher:
    def __init__(self, target_s: float, limit: int = 8, ceiling: int = 256) -> None:
        self.target_s, self.limit, self.ceiling = target_s, limit, ceiling
        self.queue: list[tuple[ModelVersion, np.ndarray, int, asyncio.Future[TopK]]] = []

    async def top_k(self, version: ModelVersion, w: np.ndarray, k: int) -> TopK:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[TopK] = loop.create_future()
        if not self.queue:
            loop.call_soon(self._flush)
        self.queue.append((version, w, k, answer))
        return await answer

    def _flush(self) -> None:
        batch, self.queue = self.queue[:self.limit], self.queue[self.limit:]
        if self.queue:
            asyncio.get_running_loop().call_soon(self._flush)
        started = time.perf_counter()
        for version in {id(entry[0]): entry[0] for entry in batch}.values():  # a swap may mix two versions
            same = [entry for entry in batch if entry[0] is version]
            answers = top_k_many(version, np.stack([entry[1] for entry in same]), [entry[2] for entry in same])
            for (_, _, _, future), answer in zip(same, answers):
                if not future.done():
                    future.set_result(answer)
        BATCH_SIZE.observe(len(batch))
        if time.perf_counter() - started <= self.target_s:
            self.limit = min(self.limit + 1, self.ceiling)
        else:
            self.limit = max(int(self.limit * 0.9), 1)
