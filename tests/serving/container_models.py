"""Models for the container tests: each scores ``item / 10`` (plus the context's ``bonus``) or misbehaves."""

from __future__ import annotations

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
