"""``velox retrain``: the Spark job that turns the logged feedback into a new model version.

1. Snapshot the end offsets of ``observations``; the start is where the last run stopped.
2. Read that offset range and validate each event with the same decoder the worker uses (bad
   events were dead-lettered by the worker; here they are skipped). Up to ``driver_rows`` offsets
   (``Settings.driver_rows``) the driver reads them itself, else Spark's Kafka source does.
3. Append the rows to the Parquet training log (one folder per offset range, so a repeated run
   replaces its rows), then remember the end offsets beside it.
4. Split each partition at the offset that leaves its most recent ``holdout`` share out;
   those offsets are the version's training end: the worker re-applies everything after them.
   Up to ``driver_rows`` rows the log is read into the driver and split there, else in Spark.
5. Fit (velox.batch.train) on the rows before the split, validate on the rows after.
6. Save the version to the model store; announce it on ``model-versions`` (unless told not to).

A failure at any step leaves the active version as it was. One job at a time: a lock file in
the data directory refuses a second.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import math
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import Producer
from pyarrow import dataset, parquet
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from velox.batch.rows import ROW_SCHEMA, ROWS, counted_rows, valid_rows
from velox.batch.train import (
    Ratings,
    TrainParams,
    collect_ratings,
    fit,
    fit_arrays,
    fit_implicit,
    rmse,
    spark_session,
)
from velox.control import items, versions
from velox.errors import IdCollision, RetrainBusy
from velox.kafka import client_config, clients, positions
from velox.local import jars
from velox.model import content
from velox.model.index import build_for, rows_of
from velox.model.store import ModelStore, filesystem
from velox.model.version import ModelVersion
from velox.schemas import ids
from velox.schemas.feedback import Feedback
from velox.schemas.model_version import VersionInfo
from velox.settings import Settings

log = logging.getLogger("velox.retrain")

CONSUMED = "_velox_consumed.json"  # Spark skips files starting with "_" when it reads the log


def retrain(
    settings: Settings, params: TrainParams, master: str = "local[*]",
    spark_conf: Mapping[str, str] | None = None, activate: bool = True, reason: str = "manual",
) -> VersionInfo:
    with exclusive(settings):
        spark = spark_session(master, spark_conf, jars.fetch(jars.SPARK_KAFKA, settings.cache))
        try:
            return _retrain(spark, settings, params, activate, reason)
        finally:
            spark.stop()


class WarmJob:
    """Retrains in one long-lived Spark session, for the controller: JVM start-up and JIT warm-up
    are paid once, not at every run (bench/retrain.py times a cold run against a warm one)."""

    def __init__(self, settings: Settings, params: TrainParams, master: str = "local[*]",
                 spark_conf: Mapping[str, str] | None = None, activate: bool = True) -> None:
        self.settings, self.params, self.master, self.spark_conf = settings, params, master, spark_conf
        self.activate = activate  # False: each version is saved for a person to activate (``velox model activate``)
        self.spark: SparkSession | None = None
        self.producer: Producer | None = None  # versions.announcer, kept

    def __call__(self, reason: str, activate: bool = True) -> VersionInfo:
        """Train and save a version; activate it if this job activates and ``activate`` (False: a pin holds)."""
        with exclusive(self.settings):
            if self.spark is None:
                self.spark = spark_session(self.master, self.spark_conf, jars.fetch(jars.SPARK_KAFKA, self.settings.cache))
                self.producer = versions.announcer(self.settings)
            return _retrain(self.spark, self.settings, self.params, self.activate and activate, reason, self.producer)

    def close(self) -> None:
        if self.spark is not None:
            self.spark.stop()


def _retrain(spark: SparkSession, settings: Settings, params: TrainParams, activate: bool, reason: str,
             producer: Producer | None = None) -> VersionInfo:
    started = time.monotonic()
    topic = settings.topic("observations")
    log_dir = LogFolder(settings.training_log_path)
    start, end = log_dir.consumed(), positions.end_offsets(settings, topic)
    appended = append(spark, settings, log_dir, topic, start, end)
    log_dir.remember(end)
    log.info("read %s offsets %s -> %s: %d valid rows appended to %s", topic, start, end, appended,
             settings.training_log_path)

    version_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    log.info("training version %s (%s)", version_id, params)
    version, training_end, held_out = train_and_hold_out(spark, settings, log_dir, end, params, version_id)
    version = with_content(version, settings)
    holdout_rows = len(held_out[0])
    validation = rmse(version, held_out) if holdout_rows else None
    info = VersionInfo(
        id=version_id, created_at=time.time(), d=version.d, training_end=training_end,
        training_rows=int(version.user_counts.sum()), holdout_rows=holdout_rows, validation_rmse=validation,
        params={key: value for key, value in asdict(params).items()}, reason=reason,
    )
    ModelStore(settings.model_store).save(version, info, build_for(version, settings.topk_index_items,
                                                                   settings.topk_breadth))
    log.info("saved version %s to %s: %d training rows, validation RMSE %s on %d held-out rows, %.1f s so far",
             version_id, settings.model_store, info.training_rows,
             f"{validation:.4f}" if validation is not None else "n/a", holdout_rows, time.monotonic() - started)
    if activate:
        versions.activate(settings, version_id, reason, producer)
        log.info("activated version %s (%s)", version_id, reason)
    return info


def with_content(version: ModelVersion, settings: Settings) -> ModelVersion:
    """The version with the content model of its trained items' attributes (``velox.model.content``,
    from the ``items`` topic), when enough of them have some, and the items with attributes it did
    not train on appended at their mapped factors and bias (``trained_items`` says where): part of
    the version, so the workers learn on them as the edges score them, the same after any restart."""
    rows = items.current(settings)
    attributes = items.by_code(rows)
    model = content.learn(version.item_ids, rows_of(version), version.user_vectors, attributes,
                          settings.item_features or "")
    if model is None:
        return version
    names = {code: key for key in rows if (code := ids.code(ids.given(key))) < 0}  # (those trained: the same)
    described = dataclasses.replace(version, content=model, trained_items=len(version.item_ids)).described(
        attributes, names)
    log.info("content model of %s: %d attribute columns, λ %g, leave-one-out error %.4f as a rating's; %d items "
             "described by it", version.id, len(model.columns), model.l2, model.loo_rmse,
             len(described.item_ids) - len(version.item_ids))
    return described


def append(spark: SparkSession, settings: Settings, log_dir: LogFolder, topic: str, start: dict[int, int],
           end: dict[int, int]) -> int:
    """Append the valid rows of the offset range to the training log; how many (no Spark job if none is new).

    One folder per offset range: a run repeated after a crash overwrites its rows, never doubles them.
    """
    if all(offset <= start.get(p, 0) for p, offset in end.items()):
        return 0
    folder = "from=" + "-".join(f"{p}.{start.get(p, 0)}" for p in sorted(end))
    if sum(offset - start.get(p, 0) for p, offset in end.items()) <= settings.driver_rows:
        log_dir.write(folder, read_on_driver(settings, topic, start, end))
    else:
        read_kafka(spark, settings, topic, start, end).write.mode("overwrite").parquet(
            f"{settings.training_log_path}/{folder}")
    return log_dir.rows(folder).count_rows()  # from the footers just written: no second pass over Kafka


def train_and_hold_out(spark: SparkSession, settings: Settings, log_dir: LogFolder, end: dict[int, int],
                       params: TrainParams, version_id: str) -> tuple[ModelVersion, dict[int, int], Ratings]:
    """The version, its training end offsets, and the held-out ratings to validate it on.

    A log of up to ``settings.driver_rows`` rows is read once into the driver and split there: each Spark
    job has a fixed cost that a local session pays in full, and splitting in Spark took four of
    them (bench/retrain.py times the warm retrain they were part of). A larger log is split in Spark.
    """
    table = log_dir.table(settings.driver_rows)
    if table is None:
        rows = spark.read.schema(ROWS).parquet(settings.training_log_path)
        training_end = split_offsets(rows, end, settings.holdout)
        train, holdout = split(spark, rows, training_end)
        if settings.implicit:
            trained = fit_implicit(*summed_interactions(train), params, version_id)
        else:
            trained = fit(train.select("user", "item", "score"), params, version_id, log_dir.scratch,
                          settings.driver_rows)
        named = (rows.where(F.col(f"{side}_name").isNotNull()).select(side, f"{side}_name") for side in ("user", "item"))
        pairs = [(row[0], row[1]) for frame in named for row in frame.distinct().collect()]
        return trained.named(names(pairs)), training_end, collect_ratings(holdout)
    partition, offset = table["partition"].to_numpy(), table["offset"].to_numpy()
    training_end = cut_offsets(partition, offset, end, settings.holdout)
    cuts = np.zeros(max(training_end) + 1, np.int64)  # by partition (the log's are all in ``end``)
    cuts[list(training_end)] = list(training_end.values())
    inside = offset < cuts[partition]
    users, items, scores = (table[name].to_numpy() for name in ("user", "item", "score"))
    held_out = (users[~inside], items[~inside], scores[~inside])
    given = names(pair for side in ("user", "item") for pair in named_pairs(table, side))
    if settings.implicit:
        confidence = table["confidence"].fill_null(1.0).to_numpy()
        trained = fit_implicit((users[inside], items[inside], scores[inside]), confidence[inside], params, version_id)
    else:
        trained = fit_arrays(spark, (users[inside], items[inside], scores[inside]), params, version_id,
                             log_dir.scratch, given)
    return trained.named(given), training_end, held_out


def summed_interactions(train: DataFrame) -> tuple[Ratings, np.ndarray]:
    """The training interactions summed per user and item in Spark (preferred if any of them was,
    their confidences added), for the driver's implicit ALS: a log larger than ``driver_rows``
    comes to the driver as its distinct pairs only, which is all the fit reads of it."""
    pairs = train.groupBy("user", "item").agg(
        F.max("score").alias("score"), F.sum(F.coalesce("confidence", F.lit(1.0))).alias("confidence")).toArrow()
    return (pairs["user"].to_numpy(), pairs["item"].to_numpy(), pairs["score"].to_numpy()), \
        pairs["confidence"].to_numpy()


def named_pairs(table: pa.Table, side: str) -> Iterator[tuple[int, str]]:
    """The distinct (code, string id) pairs of one side of the log's rows: found in Arrow, so only the
    distinct string ids come into Python, not a tuple per row."""
    named = table.filter(pc.is_valid(table[f"{side}_name"])).group_by([side, f"{side}_name"]).aggregate([])
    return zip(named[side].to_pylist(), named[f"{side}_name"].to_pylist())


def names(pairs: Iterable[tuple[int, str]]) -> dict[int, str]:
    """The string ids of the log by code; two strings of one code (a 63-bit hash collision: see
    ``velox.schemas.ids``) are refused by name rather than trained as one item."""
    found: dict[int, str] = {}
    for code, name in pairs:
        if found.setdefault(code, name) != name:
            raise IdCollision(f"the ids {found[code]!r} and {name!r} have the same code {code}: rename one of them")
    return found


def cut_offsets(partition: np.ndarray, offset: np.ndarray, end: dict[int, int], holdout: float) -> dict[int, int]:
    """``split_offsets`` on the driver: the same cut, exactly, from arrays."""
    cuts = dict(end)
    if holdout <= 0:
        return cuts
    for p in np.unique(partition).tolist():
        offsets = np.sort(offset[partition == p])
        if len(offsets) >= 10:
            cuts[p] = int(offsets[math.ceil((1.0 - holdout) * len(offsets)) - 1]) + 1
    return cuts


def read_kafka(spark: SparkSession, settings: Settings, topic: str, start: dict[int, int],
               end: dict[int, int]) -> DataFrame:
    """Valid observations in the offset range, as (user, item, score, time, partition, offset) rows."""
    raw = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", settings.bootstrap)
        .option("assign", json.dumps({topic: sorted(end)}))
        .option("startingOffsets", json.dumps({topic: {str(p): start.get(p, -2) for p in end}}))
        .option("endingOffsets", json.dumps({topic: {str(p): o for p, o in end.items()}}))
        .option("kafka.isolation.level", "read_committed")
        .options(**{f"kafka.{key}": value for key, value in client_config.java_options(settings).items()})
        # A fetch at a range's end waits for data that will not come (500 ms by default) once per
        # task: most of a short read's time (bench/retrain.py times the warm runs).
        .option("kafka.fetch.max.wait.ms", "10")
        .load()
    )
    # A task per core, not per Kafka partition: each task starts a consumer and feeds a Python
    # worker, a fixed cost that more tasks than cores pay in turn.
    return (raw.select("key", "value", "partition", "offset").coalesce(spark.sparkContext.defaultParallelism)
            .mapInArrow(valid_rows(settings.partitions, feedback_of(settings)), ROWS))


def read_on_driver(settings: Settings, topic: str, start: dict[int, int], end: dict[int, int],
                   chunk: int = 10_000) -> pa.Table:
    """``read_kafka``'s rows, read by the driver: a Spark job (a consumer and a Python worker per
    task) costs more than the reading itself up to millions of small records (bench/retrain.py
    times the warm retrain this is part of). Up to ``chunk`` rows at a time in Python lists."""
    feedback = feedback_of(settings)
    batches = [counted_rows(((m.key(), m.value(), partition, m.offset()) for m in messages), settings.partitions,
                            feedback)
               for partition, last in end.items()
               for messages in clients.read_range(settings, topic, partition, start.get(partition, 0), last, chunk)]
    return pa.Table.from_batches(batches, schema=ROW_SCHEMA)


def split_offsets(rows: DataFrame, end: dict[int, int], holdout: float) -> dict[int, int]:
    """Per partition, the first offset of its most recent ``holdout`` share; its end if too few rows."""
    cuts = {p: end[p] for p in end}
    if holdout <= 0:
        return cuts
    stats = rows.groupBy("partition").agg(
        F.count("*").alias("n"), F.percentile_approx("offset", 1.0 - holdout, 10_000).alias("cut")
    )
    for row in stats.collect():
        if row["n"] >= 10:
            cuts[row["partition"]] = int(row["cut"]) + 1
    return cuts


def split(spark: SparkSession, rows: DataFrame, training_end: dict[int, int]) -> tuple[DataFrame, DataFrame]:
    ends = spark.createDataFrame([(p, o) for p, o in training_end.items()], "partition int, training_end long")
    tagged = rows.join(F.broadcast(ends), "partition")
    inside = F.col("offset") < F.col("training_end")
    return tagged.where(inside).drop("training_end"), tagged.where(~inside).drop("training_end")


class LogFolder:
    """The training log's folder (path or URI) and the offsets the log holds up to."""

    def __init__(self, root: str) -> None:
        self.fs, self.path = filesystem(root)
        # Beside the rows, where the executors can read what the driver stages for them; the
        # readers of the log (Spark's and Arrow's) skip names starting with "_".
        self.scratch = f"{root.rstrip('/')}/_scratch"

    def consumed(self) -> dict[int, int]:
        try:
            with self.fs.open_input_stream(f"{self.path}/{CONSUMED}") as source:
                return {int(p): o for p, o in json.loads(source.read()).items()}
        except FileNotFoundError:
            return {}

    def rows(self, folder: str = "") -> dataset.Dataset:
        """The log's rows, or those of one of its folders; counting them reads only the Parquet footers."""
        return dataset.dataset(f"{self.path}/{folder}".rstrip("/"), ROW_SCHEMA, "parquet", self.fs)

    def table(self, most: int) -> pa.Table | None:
        """The whole log, if it holds at most ``most`` rows."""
        rows = self.rows()
        return rows.to_table() if rows.count_rows() <= most else None

    def write(self, folder: str, rows: pa.Table) -> None:
        """``rows`` as the log's ``folder``, replacing what a run that failed after writing it left."""
        self.fs.delete_dir_contents(f"{self.path}/{folder}", missing_dir_ok=True)
        self.fs.create_dir(f"{self.path}/{folder}", recursive=True)
        parquet.write_table(rows, f"{self.path}/{folder}/part-00000.parquet", filesystem=self.fs)

    def remember(self, end: dict[int, int]) -> None:
        self.fs.create_dir(self.path, recursive=True)
        with self.fs.open_output_stream(f"{self.path}/{CONSUMED}") as out:
            out.write(json.dumps(end).encode())


def feedback_of(settings: Settings) -> Feedback:
    """What the system's events teach, as the worker reads them."""
    return Feedback(settings.implicit, settings.confidences)


@contextmanager
def exclusive(settings: Settings) -> Iterator[None]:
    settings.data.mkdir(parents=True, exist_ok=True)
    with open(settings.data / "retrain.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RetrainBusy(f"another retrain is running (lock {settings.data / 'retrain.lock'})") from None
        yield
