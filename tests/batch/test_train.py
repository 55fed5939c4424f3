"""Training on Spark: the version beats the global mean, scores in bulk as ``ModelVersion.score``
does, and keeps ids that do not fit ALS's int32; the retrain job splits a log the same way on the
driver as in Spark."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyspark
import pytest
from pyspark.sql import DataFrame, SparkSession

from velox.batch import job, train
from velox.batch.rows import ROW_SCHEMA
from velox.batch.train import Ratings, TrainParams, fit, fit_arrays, rmse, spark_session
from velox.model.batch_scores import predict_many
from velox.model.version import ModelVersion
from velox.settings import Settings

SAMPLE = Path(pyspark.__file__).parent / "data" / "mllib" / "als" / "sample_movielens_ratings.txt"
PARAMS = TrainParams(rank=4, reg=0.1, iterations=5, bias_reg=2.0)

# PySpark leaves the socket of each collect to the garbage collector (pyspark.util._load_from_socket).
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    session = spark_session("local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def sample() -> Ratings:
    """Spark's MovieLens sample: ``user::item::rating::timestamp``, 30 users, 100 items."""
    rows = np.array([line.split("::")[:3] for line in SAMPLE.read_text().splitlines()], dtype=np.float64)
    return rows[:, 0].astype(np.int64), rows[:, 1].astype(np.int64), rows[:, 2]


@pytest.fixture(scope="module")
def version(spark: SparkSession, sample: Ratings, tmp_path_factory: pytest.TempPathFactory) -> ModelVersion:
    return fit(frame(spark, sample), PARAMS, "sample", str(tmp_path_factory.mktemp("scratch")))


def frame(spark: SparkSession, ratings: Ratings) -> DataFrame:
    users, items, scores = ratings
    return spark.createDataFrame(pa.table({"user": users, "item": items, "score": scores}))


def test_fit_beats_the_global_mean_on_its_training_set(version: ModelVersion, sample: Ratings) -> None:
    scores = sample[2]
    assert rmse(version, sample) < np.sqrt(np.mean(np.square(scores - scores.mean())))


def test_version_has_rank_plus_bias_and_counts_every_rating(version: ModelVersion, sample: Ratings) -> None:
    assert version.d == PARAMS.rank + 1
    assert version.user_counts.sum() == len(sample[0])


def test_rmse_of_a_data_frame_equals_that_of_its_arrays(
        spark: SparkSession, version: ModelVersion, sample: Ratings) -> None:
    assert rmse(version, frame(spark, sample)) == pytest.approx(rmse(version, sample))


def test_predict_many_scores_each_user_from_the_prior(version: ModelVersion) -> None:
    unknown = 10**12
    assert not version.knows_user(unknown) and not version.knows_item(unknown)
    users = np.array([0, 17, 29, unknown, 3, unknown])
    items = np.array([2, 50, unknown, 7, 99, unknown])
    expected = [version.score(version.prior(int(u)), int(i)) for u, i in zip(users, items)]
    # score takes the dot product in float32 (the edge's hot path), predict_many in float64.
    np.testing.assert_allclose(predict_many(version, users, items), expected, rtol=1e-6)


@pytest.mark.parametrize("driver_rows", [train.DRIVER_ROWS, 0], ids=["biases-on-the-driver", "all-in-spark"])
def test_ids_beyond_int32_give_the_same_model_on_either_path(
        spark: SparkSession, version: ModelVersion, sample: Ratings, driver_rows: int,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(train, "DRIVER_ROWS", driver_rows)
    users, items, scores = sample
    # The sample's ids run from 0 without gaps, so the shifted ids' dense indices are the
    # original ids: ALS gets the same input, and only a wrong mapping back could change a score.
    assert np.array_equal(np.unique(users), np.arange(users.max() + 1))
    assert np.array_equal(np.unique(items), np.arange(items.max() + 1))
    shift = 2**40
    shifted = fit(frame(spark, (users + shift, items + shift, scores)), PARAMS, "shifted", str(tmp_path))
    np.testing.assert_array_equal(shifted.user_ids, version.user_ids + shift)
    np.testing.assert_array_equal(shifted.item_ids, version.item_ids + shift)
    np.testing.assert_allclose(predict_many(shifted, users + shift, items + shift),
                               predict_many(version, users, items), atol=1e-5)


def test_the_job_splits_and_holds_out_the_same_rows_on_the_driver_as_in_spark(
        spark: SparkSession, sample: Ratings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    users, items, scores = sample
    partition = (users % 3).astype(np.int32)
    offset = np.zeros(len(users), np.int64)
    for p in range(3):  # each partition's offsets in order, with gaps (skipped invalid events)
        offset[partition == p] = np.cumsum(np.random.default_rng(p).integers(1, 3, (partition == p).sum()))
    log = tmp_path / "log"
    (log / "from=0").mkdir(parents=True)
    pq.write_table(pa.table({"user": users, "item": items, "score": scores, "time": np.zeros(len(users)),
                             "partition": partition, "offset": offset}, schema=ROW_SCHEMA), log / "from=0" / "rows.parquet")
    settings = Settings(data=tmp_path, training_log=str(log), holdout=0.2)
    end = {p: int(offset[partition == p].max()) + 1 for p in range(3)} | {3: 0}  # an empty partition too
    found = {}
    for driver_rows in (train.DRIVER_ROWS, 0):
        monkeypatch.setattr(job, "DRIVER_ROWS", driver_rows)
        found[driver_rows] = job.train_and_hold_out(spark, settings, job.LogFolder(str(log)), end, PARAMS, "v")
    (on_driver, driver_end, driver_held), (in_spark, spark_end, spark_held) = found.values()
    assert driver_end == spark_end and driver_end[3] == 0 and all(driver_end[p] < end[p] for p in range(3))
    held = offset >= np.array([driver_end[p] for p in range(3)])[partition]
    assert 0.15 < held.mean() < 0.25
    for name, ratings in (("driver", driver_held), ("spark", spark_held)):
        order = np.lexsort((ratings[1], ratings[0]))
        expected = np.lexsort((items[held], users[held]))
        for column, want in zip(ratings, (users[held], items[held], scores[held])):
            np.testing.assert_array_equal(column[order], want[expected], err_msg=name)
    assert on_driver.user_counts.sum() == in_spark.user_counts.sum() == (~held).sum()


def test_the_driver_path_stages_what_als_reads_for_the_executors_instead_of_shipping_it_in_tasks(
        spark: SparkSession, version: ModelVersion, sample: Ratings, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # createDataFrame of local rows puts them inside the tasks: for ml-100k, 2 MB tasks.
    monkeypatch.setattr(SparkSession, "createDataFrame", lambda *_, **__: pytest.fail("rows shipped in the tasks"))
    staged = fit_arrays(spark, sample, PARAMS, "staged", str(tmp_path / "scratch"))
    users, items, _ = sample
    np.testing.assert_allclose(predict_many(staged, users, items), predict_many(version, users, items), atol=1e-5)
    assert not list((tmp_path / "scratch").iterdir())  # the staged file is gone with the fit
