"""Models for the container tests: each scores ``item / 10`` (plus the context's ``bonus``), misbehaves,
or tells what it was called with."""

from __future__ import annotations

import threading
import time

from velox.schemas.container_rpc import Input


def good(inputs: list[Input]) -> list[float]:
    return [i.item / 10 + float(i.context.get("bonus", 0.0)) for i in inputs]


class Second:
    """Version 2 of ``good``, told apart by 100 more: an object with ``predict_batch``."""

    def predict_batch(self, inputs: list[Input]) -> list[float]:
        return [score + 100 for score in good(inputs)]


second = Second()


def slow(inputs: list[Input]) -> list[float]:
    time.sleep(0.5)
    return good(inputs)


def nan(inputs: list[Input]) -> list[float]:
    return [float("nan") for _ in inputs]


def short(inputs: list[Input]) -> list[float]:
    return good(inputs)[1:]


def raising(inputs: list[Input]) -> list[float]:
    raise ValueError("this model always fails")


def batch_size(inputs: list[Input]) -> list[float]:
    """A fixed cost per call, like scikit-learn's; each answer is the size of the batch it came in."""
    time.sleep(0.02)
    return [float(len(inputs))] * len(inputs)


_running, _counting = 0, threading.Lock()


def calls_at_once(inputs: list[Input]) -> list[float]:
    """A fixed cost per call; each answer is how many calls the replica was running when it began."""
    global _running
    with _counting:
        _running += 1
        running = _running
    time.sleep(0.02)
    with _counting:
        _running -= 1
    return [float(running)] * len(inputs)


def threads(inputs: list[Input]) -> list[float]:
    """Each answer is the most threads a library loaded in the replica (BLAS, scikit-learn's OpenMP)
    would use within one call."""
    import sklearn.ensemble  # noqa: F401  (OpenMP, loaded after the replica started)
    from threadpoolctl import threadpool_info

    return [float(max(info["num_threads"] for info in threadpool_info()))] * len(inputs)
