"""The Faust app: ``observations`` in, each user's state updated in the ``user-state`` table.

Per event, in order within a partition (partitions are by user, so one worker owns a user):

1. decode and validate the event; a bad one goes to ``observations-dlq`` with the reason;
2. load the user's record from the table (RocksDB, one DB per partition);
3. skip the event if the record's last applied source offset is at or beyond it (a replay);
4. predict, record the prequential error, apply the update rule;
5. write the record, with the event's offset inside it, back to the table (and its changelog).

Exactly once is ours, not Faust's: Faust commits a source offset only after flushing the
changelog writes of the events before it, and every record carries the offset it reflects,
so a replay after ``kill -9`` changes nothing. When a replayed event finds the local record
already past it (RocksDB kept a write whose changelog message was lost in the crash), the
record is written again so the changelog catches up with the local state.
"""

from __future__ import annotations

import time
from typing import Any

import faust
from faust.types import TP

from velox.errors import InvalidObservation
from velox.model.learner import Learner
from velox.model.prequential import PrequentialErrors
from velox.schemas import metrics as metrics_schema
from velox.schemas import observation, user_state
from velox.schemas.dead_letter import DeadLetter
from velox.settings import Settings
from velox.streams import metrics

def raw() -> faust.Schema:
    """Bytes in, bytes out: we decode ourselves, so a bad event reaches us instead of crashing Faust.

    A new Schema each time: Faust updates a schema in place when a topic or table takes it.
    """
    return faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
# RocksDB per table partition: rocksdict's defaults (a 2 GiB block cache each) add up.
ROCKSDB_OPTIONS = {"block_cache_size": 64 * 2**20, "write_buffer_size": 16 * 2**20, "driver": "rocksdict"}


def create_app(settings: Settings, learner: Learner) -> faust.App:
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap}",
        store="rocksdb://",
        datadir=str(settings.data / "worker"),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        consumer_group_instance_id=settings.worker_id,
        broker_session_timeout=10.0,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=16_384,
        broker_max_poll_records=2_000,
        producer_linger=0.005,
        producer_acks=-1,
        web_enabled=False,
    )
    source = app.topic(settings.topic("observations"), partitions=settings.partitions, schema=raw())
    dead_letters = app.topic(settings.topic("observations-dlq"), schema=raw())
    error_windows = app.topic(settings.topic("model-metrics"), schema=raw())
    table = app.Table(  # key and value type bytes: Faust then stores them raw
        "user-state", partitions=settings.partitions, options=ROCKSDB_OPTIONS, key_type=bytes, value_type=bytes
    )
    errors = PrequentialErrors()
    last_offsets: dict[int, int] = {}

    @app.agent(source, name="apply-observations")
    async def apply_observations(stream: faust.Stream[Any]) -> None:
        async for event in stream.events():
            message = event.message
            started = time.perf_counter()
            try:
                seen = decode(message.key, message.value)
            except InvalidObservation as exc:
                letter = DeadLetter(str(exc), exc.field, message.topic, message.partition, message.offset)
                await dead_letters.send(key=message.key, value=message.value, headers=letter.headers())
                metrics.DEAD_LETTERS.labels(field=exc.field or "event").inc()
                continue
            finally:
                last_offsets[message.partition] = message.offset
            stored = table.get(message.key)
            state = user_state.decode(stored) if stored is not None else None
            new, prediction = learner.observe(state, seen.user, seen.item, seen.score, message.offset)
            if prediction is None:
                table[message.key] = stored  # re-emit: see the module docstring
                metrics.DUPLICATES.inc()
                continue
            table[message.key] = user_state.encode(new)
            errors.record(learner.version.id, message.partition, seen.score - prediction)
            if not learner.version.knows_item(seen.item):
                metrics.UNKNOWN_ITEMS.inc()
            metrics.APPLIED.inc()
            metrics.UPDATE_SECONDS.observe(time.perf_counter() - started)

    @app.timer(interval=settings.metrics_interval)
    async def publish_metrics() -> None:
        for window in errors.drain():
            await error_windows.send(key=window.version.encode(), value=metrics_schema.encode(window))
        for partition, offset in last_offsets.items():
            highwater = app.consumer.highwater(TP(source.get_topic_name(), partition))
            if highwater is not None:
                metrics.CONSUMER_LAG.labels(partition=str(partition)).set(max(highwater - offset - 1, 0))

    return app


def decode(key: bytes | None, value: bytes | None) -> observation.Observation:
    """The event, or InvalidObservation; the key must be the user id, or partitioning is wrong."""
    if value is None:
        raise InvalidObservation("", "empty message (no value)")
    seen = observation.decode(value)
    if key != seen.key:
        raise InvalidObservation("user", f"message key {key!r} is not the user id {seen.user}")
    return seen
