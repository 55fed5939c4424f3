"""Train a model version on Spark: biases first, then ALS on what the biases leave.

    rating ≈ μ + b_i + b_u + U_u · V_i

Biases carry most of what explains a rating; fitting them first leaves ALS's rank to the
interactions. The version stores ``[U_u, b_u]`` as the user's vector, so ``ModelVersion.score``
reproduces this sum and the online rules keep moving the user's bias.

Implicit feedback (``fit_implicit``) has no rating to centre: implicit ALS on the driver
(``velox.model.implicit_als``), μ = 0 and no item biases, the user's last coordinate their offset.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
from pyarrow import parquet
from pyspark.ml.recommendation import ALS
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

import velox
from velox import processes
from velox.model import implicit_als
from velox.model.batch_scores import predict_many
from velox.model.store import filesystem
from velox.model.version import ModelVersion

BIAS_PASSES = 2  # alternating passes of b_i then b_u
ALS_BLOCKS = 10  # Spark's default number of blocks per side, sized for a cluster
INT32_MAX = 2**31 - 1

Ratings = tuple[np.ndarray, np.ndarray, np.ndarray]  # users, items, scores


@dataclass(frozen=True)
class TrainParams:
    """ALS rank, regParam and maxIter; ``bias_reg`` shrinks a bias like that many ratings at zero.

    The defaults come from 5-fold cross-validation on MovieLens 100k (``bench/retrain.py``).
    """

    rank: int = 49  # d = 50, the online rules' default dimension
    reg: float = 0.13
    iterations: int = 10
    bias_reg: float = 3.0
    seed: int = 0


class _Side(NamedTuple):
    """One side (users or items) of a trained model, as arrays sorted by id."""

    ids: np.ndarray
    bias: np.ndarray
    counts: np.ndarray
    factors: np.ndarray


def shipped_package() -> Path:
    """The ``velox`` package as a zip for ``addPyFile``: executors on a cluster validate events with
    its decoder, and need not have it installed (its dependencies, msgspec and numpy, they do).

    Named by the content's digest, so a changed package is shipped anew and an unchanged one is
    zipped once."""
    package = Path(velox.__file__).parent
    files = sorted(p for p in package.rglob("*") if p.suffix in (".py", ".json", ".xml") and "__pycache__" not in p.parts)
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(package)).encode() + path.read_bytes())
    target = Path(tempfile.gettempdir()) / f"velox-package-{digest.hexdigest()[:16]}.zip"
    if not target.exists():
        partial = target.with_name(f"{target.name}.{os.getpid()}")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in files:
                archive.write(path, path.relative_to(package.parent))
        partial.replace(target)
    return target


def spark_session(master: str = "local[*]", conf: Mapping[str, str] | None = None,
                  jars: Sequence[Path] = ()) -> SparkSession:
    """The retrain job's session; ``conf`` comes last so a cluster's settings override ours.

    In local mode the workers run this interpreter, where velox is installed. PySpark takes the
    workers' Python only from PYSPARK_PYTHON, so that is set (unless already set). On a cluster
    the job ships the package to the executors (``shipped_package``).
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    settings = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",  # stage progress bars on the console of `velox evaluate`
        "spark.sql.shuffle.partitions": "4",
        "spark.driver.memory": "2g",
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        **({"spark.jars": ",".join(str(jar) for jar in jars)} if jars else {}),
        **(conf or {}),
    }
    with processes.stop_deferred():  # a stop while the JVM starts would leave it running (see there)
        session = SparkSession.builder.master(master).appName("velox-retrain").config(map=settings).getOrCreate()
    if not master.startswith("local"):
        session.sparkContext.addPyFile(str(shipped_package()))
    return session


def fit(ratings: DataFrame, params: TrainParams, version_id: str, scratch: str, driver_rows: int) -> ModelVersion:
    """A version trained on ``ratings`` (columns user, item, score).

    Up to ``driver_rows`` ratings (``Settings.driver_rows``), the biases are computed on the driver
    (``fit_arrays``, which stages what ALS reads in ``scratch``). Beyond, in Spark, so that the
    ratings never need to fit in the driver.
    """
    with _cached(ratings.select(F.col("user").cast("long"), F.col("item").cast("long"),
                                F.col("score").cast("double"))) as ratings:
        if ratings.count() <= driver_rows:
            return fit_arrays(ratings.sparkSession, collect_ratings(ratings), params, version_id, scratch)
        return _version(version_id, *_fit_on_spark(ratings, params))


def fit_implicit(interactions: Ratings, confidence: np.ndarray, params: TrainParams, version_id: str) -> ModelVersion:
    """A version trained on interactions already on the driver (``score`` their preference), by
    implicit ALS with λ = ``params.reg``: its exact solves share each side's Gramian, where Spark's
    ALS(implicitPrefs) regularises each user by their number of items, another objective than the
    one the online rule solves (``velox.model.implicit``)."""
    users, items, preference = interactions
    fitted = implicit_als.fit(users, items, preference, confidence, params.rank, params.reg, params.iterations,
                              params.seed)
    return ModelVersion(
        id=version_id, global_mean=0.0, item_ids=fitted.item_ids, item_factors=fitted.item_factors,
        item_bias=np.zeros(len(fitted.item_ids), np.float32), user_ids=fitted.user_ids,
        user_vectors=fitted.user_vectors, user_counts=fitted.user_counts, interactions=fitted.interactions,
    )


def _version(version_id: str, mean: float, items: _Side, users: _Side) -> ModelVersion:
    return ModelVersion(
        id=version_id, global_mean=mean,
        item_ids=items.ids, item_factors=items.factors, item_bias=items.bias,
        user_ids=users.ids, user_vectors=np.hstack([users.factors, users.bias[:, None]]).astype(np.float32),
        user_counts=users.counts,
    )


def rmse(version: ModelVersion, ratings: DataFrame | Ratings) -> float:
    """Root mean squared error of the version's scores from each user's prior (no online updates)."""
    users, items, scores = collect_ratings(ratings) if isinstance(ratings, DataFrame) else ratings
    error = predict_many(version, users, items) - scores
    return float(np.sqrt(np.mean(np.square(error))))


@contextmanager
def _cached(frame: DataFrame) -> Iterator[DataFrame]:
    """Keep ``frame`` in memory while it is read several times, and free it after."""
    try:
        yield frame.cache()
    finally:
        frame.unpersist()


def fit_arrays(spark: SparkSession, ratings: Ratings, params: TrainParams, version_id: str,
               scratch: str, names: Mapping[int, str] | None = None) -> ModelVersion:
    """A version trained on ratings already on the driver: the biases from numpy, ALS in Spark on
    what they leave. The biases are a few numpy passes here, where Spark needed a dozen small
    jobs, each with a job's fixed cost (bench/retrain.py times the fit). ``scratch``: a folder
    (path or URI) the executors can read, where what ALS reads is staged. ``names``: the string
    ids of the codes that are hashes, which order ALS's keys (``_keys``)."""
    users, items, scores = ratings
    mean = float(scores.mean())
    (user_ids, user_keys), (item_ids, item_keys) = (_keys(ids, names or {}) for ids in (users, items))
    residual = scores - mean
    user_bias = np.zeros(len(user_ids))
    for _ in range(BIAS_PASSES):
        item_bias = _regularised_means(item_keys, residual - user_bias[user_keys], params.bias_reg)
        user_bias = _regularised_means(user_keys, residual - item_bias[item_keys], params.bias_reg)
    left = pa.table({"user_key": user_keys.astype(np.int32), "item_key": item_keys.astype(np.int32),
                     "residual": residual - item_bias[item_keys] - user_bias[user_keys]})
    with _staged(spark, left, scratch, version_id) as residuals:
        model = _als(params, spark).fit(residuals)
    return _version(version_id, mean, _keyed_side(item_ids, item_keys, item_bias, model.itemFactors, params.rank),
                    _keyed_side(user_ids, user_keys, user_bias, model.userFactors, params.rank))


@contextmanager
def _staged(spark: SparkSession, table: pa.Table, scratch: str, name: str) -> Iterator[DataFrame]:
    """``table`` as a DataFrame its executors read from Parquet in ``scratch``, deleted after.

    ``spark.createDataFrame`` would ship the rows inside the tasks instead: megabytes per task
    at MovieLens size, which Spark warns about and a cluster would pay on every task.
    """
    files, folder = filesystem(scratch)
    files.create_dir(folder, recursive=True)
    parquet.write_table(table, f"{folder}/{name}.parquet", filesystem=files)
    try:
        yield spark.read.parquet(f"{scratch.rstrip('/')}/{name}.parquet")
    finally:
        files.delete_file(f"{folder}/{name}.parquet")


def _keys(codes: np.ndarray, names: Mapping[int, str]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ids and each rating's key (its id's row): the int32 ids ALS takes, in the order
    of the ids as given (integers by value, then strings by their UTF-8 bytes). ALS's initial
    factors are drawn by key: the same ratings under other ids in the same order give the same
    model, whether the ids are integers or strings (a hash's order would be another draw)."""
    ids, keys = np.unique(codes, return_inverse=True)
    if not len(ids) or ids[0] >= 0:  # integer ids only: np.unique's order is theirs
        return ids, keys
    order = sorted(range(len(ids)), key=lambda row: (1, names[c].encode()) if (c := int(ids[row])) < 0 else (0, c))
    rank = np.empty(len(ids), np.int64)
    rank[order] = np.arange(len(ids))
    return ids[order], rank[keys]


def _regularised_means(keys: np.ndarray, residuals: np.ndarray, reg: float) -> np.ndarray:
    """Σ residual / (n + reg) per key, as ``_regularised_mean`` does in Spark."""
    return np.bincount(keys, residuals) / (np.bincount(keys) + reg)


def _keyed_side(ids: np.ndarray, keys: np.ndarray, bias: np.ndarray, factors: DataFrame, rank: int) -> _Side:
    """One side from the sorted ids, each rating's key (its id's row) and ALS's factors by key."""
    table = factors.toArrow()
    rows = np.zeros((len(ids), rank), dtype=np.float32)
    rows[table["id"].to_numpy()] = table["features"].combine_chunks().flatten().to_numpy().reshape(len(table), rank)
    return _Side(ids=ids, bias=bias.astype(np.float32), counts=np.bincount(keys, minlength=len(ids)), factors=rows)


def _fit_on_spark(ratings: DataFrame, params: TrainParams) -> tuple[float, _Side, _Side]:
    """The global mean and both sides, every step in Spark."""
    mean, ids_fit = _summary(ratings)
    centred = ratings.select("user", "item", (F.col("score") - mean).alias("residual"))
    item_bias, user_bias = _biases(centred, params.bias_reg)
    with _cached(_keyed(item_bias, "item", ids_fit)) as item_bias, \
            _cached(_keyed(user_bias, "user", ids_fit)) as user_bias:
        model = _als(params, ratings.sparkSession).fit(_less(_less(centred, item_bias, "item"), user_bias, "user"))
        return (mean, _collect(item_bias, model.itemFactors, "item", params.rank),
                _collect(user_bias, model.userFactors, "user", params.rank))


def _summary(ratings: DataFrame) -> tuple[float, bool]:
    """The global mean, and whether every id fits the int32 ALS accepts (one pass over the data)."""
    row = ratings.agg(F.avg("score"), F.min(F.least("user", "item")), F.max(F.greatest("user", "item"))).first()
    assert row is not None
    mean, low, high = row
    return float(mean), 0 <= low and high <= INT32_MAX


def _biases(centred: DataFrame, reg: float) -> tuple[DataFrame, DataFrame]:
    """Item and user biases (id, bias, n), each the regularised mean of what the other leaves."""
    users = centred.groupBy("user").agg(F.lit(0.0).alias("bias"))
    for _ in range(BIAS_PASSES):
        items = _regularised_mean(_less(centred, users, "user"), "item", reg)
        users = _regularised_mean(_less(centred, items, "item"), "user", reg)
    return items, users


def _regularised_mean(residuals: DataFrame, key: str, reg: float) -> DataFrame:
    """Σ residual / (n + reg) per key: a key with few ratings gets a bias near zero."""
    n = F.count("*")
    return residuals.groupBy(key).agg((F.sum("residual") / (n + reg)).alias("bias"), n.alias("n"))


def _less(residuals: DataFrame, biases: DataFrame, key: str) -> DataFrame:
    """The residuals with the bias of each row's ``key`` taken off (and any ALS key column added)."""
    return (residuals.join(biases, key).withColumn("residual", F.col("residual") - F.col("bias"))
            .drop("bias", "n"))


def _keyed(biases: DataFrame, key: str, ids_fit: bool) -> DataFrame:
    """Add ``<key>_key``, the int32 id ALS needs: the id itself if all fit, else its rank among the ids.

    The driver ranks the ids: the version holds them all there anyway, and a global window
    in Spark would sort them in one partition.
    """
    if ids_fit:
        return biases.withColumn(f"{key}_key", F.col(key).cast("int"))
    ids = np.sort(biases.select(key).toArrow()[key].to_numpy())
    index = pa.table({key: ids, f"{key}_key": np.arange(len(ids), dtype=np.int32)})
    return biases.join(biases.sparkSession.createDataFrame(index), key)


def als_blocks(spark: SparkSession) -> int:
    """A block per core, up to Spark's default: each ALS stage runs a task per block, and 10 tasks
    queued on 2 cores cost more than they share (bench/retrain.py times ALS.fit both ways)."""
    return min(spark.sparkContext.defaultParallelism, ALS_BLOCKS)


def _als(params: TrainParams, spark: SparkSession) -> ALS:
    blocks = als_blocks(spark)
    return ALS(
        rank=params.rank, regParam=params.reg, maxIter=params.iterations, seed=params.seed,
        numUserBlocks=blocks, numItemBlocks=blocks, implicitPrefs=False, nonnegative=False, coldStartStrategy="drop",
        userCol="user_key", itemCol="item_key", ratingCol="residual",
    )


def _collect(biases: DataFrame, factors: DataFrame, key: str, rank: int) -> _Side:
    """Biases, counts and ALS factors of one side, back under the original ids."""
    table = (biases.join(factors, F.col(f"{key}_key") == factors.id)
             .select(key, "bias", "n", "features").toArrow())
    order = np.argsort(table[key].to_numpy())
    features = table["features"].combine_chunks().flatten().to_numpy().reshape(len(table), rank)
    return _Side(
        ids=table[key].to_numpy()[order].astype(np.int64), bias=table["bias"].to_numpy()[order].astype(np.float32),
        counts=table["n"].to_numpy()[order].astype(np.int64), factors=features[order].astype(np.float32),
    )


def collect_ratings(ratings: DataFrame) -> Ratings:
    """The (user, item, score) columns as arrays on the driver: for held-out and test sets."""
    table = ratings.select("user", "item", "score").toArrow()
    return table["user"].to_numpy(), table["item"].to_numpy(), table["score"].to_numpy()
