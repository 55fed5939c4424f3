"""The model a container serves: any Python object or function that scores a batch of inputs."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence

from velox.errors import ConfigError
from velox.schemas.container_rpc import Input

BatchModel = Callable[[list[Input]], Sequence[float]]


def load(target: str) -> BatchModel:
    """``module:attribute``: an object with a ``predict_batch(inputs)`` method, or a function of the list.

    Each input has ``user``, ``item`` and ``context`` (the request's JSON object, ``{}`` if none);
    the answer is one score per input, in order.
    """
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"a container's model is 'module:attribute', got {target!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        # The user's module is beside them, as with ``python -m``: the ``velox`` script's path has its
        # own folder first instead (uvicorn's --app-dir does the same).
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r} for the container's model: {exc}") from None
    found = getattr(module, attribute, None)
    if found is None:
        raise ConfigError(f"module {module_name!r} has no {attribute!r}")
    method = getattr(found, "predict_batch", None)
    if callable(method):
        return method
    if callable(found):
        return found
    raise ConfigError(f"{target} is neither callable nor has a predict_batch method")
