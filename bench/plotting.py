"""matplotlib for the benchmarks' PNG plots, when installed (``pip install -e '.[bench]'``)."""

from __future__ import annotations

from types import ModuleType


def pyplot() -> ModuleType | None:
    """matplotlib's pyplot drawing to files (no display), or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt
