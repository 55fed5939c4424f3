"""The edge's side of the top-k index (``velox.model.index``): which versions get one, and counting its answers.

A version is given its index before it becomes active, off the request path: loaded from beside
it in the model store where the retrain saved one, else built here (in the thread that follows
the versions, or at start) and saved there, so the next edge or a restart loads it instead.
Catalogs under ``topk_index_items`` get none: there the index is not 4x as fast as the exact scan.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import Counter

from velox.model.index import ItemIndex, attach, index_of
from velox.model.store import ModelStore
from velox.model.version import ModelVersion
from velox.settings import Settings

log = logging.getLogger("velox.serving.top_k_index")

ANSWERS = Counter("velox_edge_top_k_answers", "Top-k answers computed (cache hits not counted), by path: the index "
                  "or the exact scan.", ["path"])
BY_INDEX, EXACT = ANSWERS.labels(path="index"), ANSWERS.labels(path="exact")


def with_index(settings: Settings, store: ModelStore | None, version: ModelVersion) -> ModelVersion:
    """``version`` with its top-k index attached when its catalog is large (from ``store``, else built)."""
    if len(version.item_ids) < settings.topk_index_items:
        return version
    index = None if store is None else store.load_index(version, settings.topk_breadth)
    if index is None:
        started = time.monotonic()
        index = ItemIndex.build(version, settings.topk_breadth)
        log.info("top-k index for %s (%d items) built in %.1f s", version.id, index.n, time.monotonic() - started)
        if store is not None:
            store.save_index(version.id, index)
    return attach(version, index)


def count(version: ModelVersion, over_candidates: bool) -> None:
    """Count one top-k answer of ``version``: by the index unless it has none or the request gave candidates."""
    (EXACT if over_candidates or index_of(version) is None else BY_INDEX).inc()
