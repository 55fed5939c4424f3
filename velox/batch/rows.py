"""The training log's rows, and how Kafka records become them.

Its own small module because Spark's Python workers import it to run ``valid_rows``: importing
the whole job would make each of them import pyspark.ml and the model store for nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import pyarrow as pa

from velox.schemas import observation
from velox.schemas.feedback import EXPLICIT, Feedback

# ``user`` and ``item`` are the ids' codes (``velox.schemas.ids``); ``user_name`` and ``item_name``
# the ids themselves where they are strings, null where they are integers (and in logs written
# before ids were strings: their readers give the missing columns as nulls). ``score`` is what the
# system learns (``Feedback.target``): the rating, or an interaction's preference, whose
# ``confidence`` is its kind's (1 for a rating; null in logs written before kinds).
ROWS = ("user long, item long, score double, time double, partition int, offset long, "
        "user_name string, item_name string, confidence double")
ROW_SCHEMA = pa.schema([("user", pa.int64()), ("item", pa.int64()), ("score", pa.float64()), ("time", pa.float64()),
                        ("partition", pa.int32()), ("offset", pa.int64()),
                        ("user_name", pa.string()), ("item_name", pa.string()),
                        ("confidence", pa.float64())])  # ROWS, for pyarrow


def valid_rows(partitions: int, feedback: Feedback = EXPLICIT) -> Callable[[Iterator[pa.RecordBatch]],
                                                                            Iterator[pa.RecordBatch]]:
    """The rows that count, decided as the worker decides (``observation.counted``): batch and
    stream agree on what is valid, and an event moved home counts once, as its copy."""

    def rows(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield counted_rows(zip(*(batch.column(n).to_pylist() for n in ("key", "value", "partition", "offset"))),
                               partitions, feedback)

    return rows


def counted_rows(records: Iterable[tuple[bytes | None, bytes | None, int, int]], partitions: int,
                 feedback: Feedback = EXPLICIT) -> pa.RecordBatch:
    """The rows of the (key, value, partition, offset) records that count: ``valid_rows`` of one batch."""
    columns: dict[str, list] = {name: [] for name in ROW_SCHEMA.names}
    for key, value, partition, offset in records:
        seen = observation.counted(key, value, partition, partitions, feedback.target)
        if seen is not None:
            user, item = seen.user_code, seen.item_code
            score, confidence = feedback.target(seen)
            for name, cell in zip(columns, (user, item, score, seen.time, partition, offset,
                                            seen.user if user < 0 else None, seen.item if item < 0 else None,
                                            confidence)):
                columns[name].append(cell)
    return pa.RecordBatch.from_pydict(columns, schema=ROW_SCHEMA)
