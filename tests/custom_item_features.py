"""A feature function of the tests' own, named by entry point (``VELOX_ITEM_FEATURES``): the retrain and the
edge must use it rather than the default (tests/batch/test_retrain.py, tests/serving/test_item_content.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def title_length(attributes: Mapping[str, Any]) -> list[float]:
    """Two numbers: the title's length, and a one."""
    return [float(len(attributes.get("title", ""))), 1.0]
