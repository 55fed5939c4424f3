"""Training on Spark: the version beats the global mean, scores in bulk as ``ModelVersion.score``
does, and keeps ids that do not fit ALS's int32; the retrain job splits a log the same way on the
driver as in Spark, and reads the same rows from Kafka on the driver as with Spark's Kafka source."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyspark
import pytest
from pyspark.sql import DataFrame, SparkSession

from tests.model.test_implicit import closed_form
from velox.batch import job
from velox.batch.rows import ROW_SCHEMA
from velox.batch.train import Ratings, TrainParams, fit, fit_arrays, rmse, spark_session
from velox.kafka import clients, positions, topic_admin
from velox.local import jars
from velox.model.batch_scores import predict_many
from velox.model.version import ModelVersion
from velox.schemas import partitioning
from velox.schemas.observation import Observation, encode
from velox.settings import Settings

SAMPLE = Path(pyspark.__file__).parent / "data" / "mllib" / "als" / "sample_movielens_ratings.txt"
PARAMS = TrainParams(rank=4, reg=0.1, iterations=5, bias_reg=2.0)

# PySpark leaves the socket of each collect to the garbage collector (pyspark.util._load_from_socket).
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    session = spark_session("local[2]", jars=jars.fetch(jars.SPARK_KAFKA, Settings.from_env().cache))
    yield session
    session.stop()


@pytest.fixture(scope="module")
def sample() -> Ratings:
    """Spark's MovieLens sample: ``user::item::rating::timestamp``, 30 users, 100 items."""
    rows = np.array([line.split("::")[:3] for line in SAMPLE.read_text().splitlines()], dtype=np.float64)
    return rows[:, 0].astype(np.int64), rows[:, 1].astype(np.int64), rows[:, 2]


@pytest.fixture(scope="module")
def version(spark: SparkSession, sample: Ratings, tmp_path_factory: pytest.TempPathFactory) -> ModelVersion:
    return fit(frame(spark, sample), PARAMS, "sample", str(tmp_path_factory.mktemp("scratch")), Settings().driver_rows)


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


@pytest.mark.parametrize("driver_rows", [Settings().driver_rows, 0], ids=["biases-on-the-driver", "all-in-spark"])
def test_ids_beyond_int32_give_the_same_model_on_either_path(
        spark: SparkSession, version: ModelVersion, sample: Ratings, driver_rows: int, tmp_path: Path) -> None:
    users, items, scores = sample
    # The sample's ids run from 0 without gaps, so the shifted ids' dense indices are the
    # original ids: ALS gets the same input, and only a wrong mapping back could change a score.
    assert np.array_equal(np.unique(users), np.arange(users.max() + 1))
    assert np.array_equal(np.unique(items), np.arange(items.max() + 1))
    shift = 2**40
    shifted = fit(frame(spark, (users + shift, items + shift, scores)), PARAMS, "shifted", str(tmp_path), driver_rows)
    np.testing.assert_array_equal(shifted.user_ids, version.user_ids + shift)
    np.testing.assert_array_equal(shifted.item_ids, version.item_ids + shift)
    np.testing.assert_allclose(predict_many(shifted, users + shift, items + shift),
                               predict_many(version, users, items), atol=1e-5)


def test_the_job_splits_and_holds_out_the_same_rows_on_the_driver_as_in_spark(
        spark: SparkSession, sample: Ratings, tmp_path: Path) -> None:
    users, items, scores = sample
    partition = (users % 3).astype(np.int32)
    offset = np.zeros(len(users), np.int64)
    for p in range(3):  # each partition's offsets in order, with gaps (skipped invalid events)
        offset[partition == p] = np.cumsum(np.random.default_rng(p).integers(1, 3, (partition == p).sum()))
    log = tmp_path / "log"
    (log / "from=0").mkdir(parents=True)
    # A log as written before ids were strings and kinds (no name or confidence columns): both readers
    # give them as nulls.
    before_names = pa.schema([field for field in ROW_SCHEMA if not field.name.endswith(("_name", "confidence"))])
    pq.write_table(pa.table({"user": users, "item": items, "score": scores, "time": np.zeros(len(users)),
                             "partition": partition, "offset": offset}, schema=before_names), log / "from=0" / "rows.parquet")
    settings = Settings(data=tmp_path, training_log=str(log), holdout=0.2)
    end = {p: int(offset[partition == p].max()) + 1 for p in range(3)} | {3: 0}  # an empty partition too
    found = {}
    for driver_rows in (settings.driver_rows, 0):
        found[driver_rows] = job.train_and_hold_out(spark, settings.replace(driver_rows=driver_rows),
                                                    job.LogFolder(str(log)), end, PARAMS, "v")
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


def test_the_driver_reads_the_same_log_rows_from_kafka_as_sparks_kafka_source(spark: SparkSession, settings: Settings) -> None:
    """Counted events only (valid, in their home partition, not in an aborted transaction), from
    each partition's start on; one partition holds nothing."""
    own = settings.replace(namespace=f"log{uuid.uuid4().hex[:8]}-", partitions=4)
    topic = own.topic("observations")
    topic_admin.create_topics(own, {topic: 4})
    users = [u for u in range(200) if partitioning.home(str(u).encode(), 4) != 3][:40]  # partition 3 stays empty
    counted, sent = [], []

    def send(producer: object, user: int, item: int, counts: bool, wrong: bool = False, value: bytes | None = None,
             key: bytes | None = b"") -> None:
        home = partitioning.home(str(user).encode(), 4)
        clients.send(producer, topic, key=str(user).encode() if key == b"" else key, partition=(home + 1) % 3 if wrong else home,
                   value=value or encode(Observation(user=user, item=item, score=item % 5 + 0.5, time=1.7e9 + item)))
        sent.append(1)
        if counts:
            counted.append((user, item, item % 5 + 0.5))

    plain = clients.producer(own)
    for n, user in enumerate(users):
        send(plain, user, n, counts=True)
        send(plain, user, 100 + n, counts=False, wrong=True)  # outside its home: counts as the copy a worker moves
        send(plain, user, 200 + n, counts=True, key=None)  # no key: the user in the value
    send(plain, users[0], 300, counts=False, value=b"{not json")
    send(plain, users[1], 301, counts=False, key=str(users[2]).encode())  # a key naming another user
    assert plain.flush(30) == 0
    moving = clients.producer(own, **{"transactional.id": f"{own.app_id}-test-mover"})
    moving.init_transactions(30)
    for items, commit in ((range(400, 420), True), (range(500, 520), False), (range(600, 610), True)):
        moving.begin_transaction()
        for item in items:
            send(moving, users[item % len(users)], item, counts=commit)
        assert moving.flush(30) == 0  # written before the end: an abort would drop what is still queued
        moving.commit_transaction(30) if commit else moving.abort_transaction(30)
    end = positions.end_offsets(own, topic)
    assert end[3] == 0 and sum(end.values()) > len(sent)  # the transactions' markers take offsets too

    def rows(table: pa.Table) -> list[tuple]:
        return sorted(zip(*(table[name].to_pylist() for name in ("partition", "offset", "user", "item", "score"))))

    on_driver = rows(job.read_on_driver(own, topic, {}, end, chunk=7))
    assert on_driver == rows(job.read_kafka(spark, own, topic, {}, end).toArrow())
    assert sorted(row[2:] for row in on_driver) == sorted(counted)
    later = {p: offset // 2 for p, offset in end.items()}  # a range that starts where a run stopped
    assert rows(job.read_on_driver(own, topic, later, end)) == rows(job.read_kafka(spark, own, topic, later, end).toArrow())
    assert [row for row in on_driver if row[1] >= later[row[0]]] == rows(job.read_on_driver(own, topic, later, end))


def test_an_implicit_retrain_reads_kinds_as_confidences_and_fits_implicit_als(
        spark: SparkSession, settings: Settings, tmp_path: Path) -> None:
    """Both readers of Kafka give each counted interaction its preference and confidence (a rating,
    an unknown kind: not counted); the driver's fit is implicit ALS, each trained user the exact
    solve of their training interactions given the version's items, whether the log came to the
    driver whole or summed in Spark."""
    own = settings.replace(namespace=f"imp{uuid.uuid4().hex[:8]}-", partitions=2, feedback="implicit",
                           confidence="view=1,click=4,purchase=20,dismiss=-4", data=tmp_path,
                           training_log=str(tmp_path / "log"), holdout=0.0)
    topic = own.topic("observations")
    topic_admin.create_topics(own, {topic: 2})
    rng = np.random.default_rng(3)
    kinds = ["view", "click", "purchase", "dismiss"]
    events = [Observation(user=int(rng.integers(12)), item=int(rng.integers(30)), kind=kinds[rng.integers(4)],
                          time=1.7e9) for _ in range(300)]
    producer = clients.producer(own)
    for seen in events + [Observation(user=1, item=2, score=4.0, time=1.7e9),
                          Observation(user=1, item=2, kind="share", time=1.7e9)]:
        clients.send(producer, topic, key=seen.key, partition=partitioning.home(seen.key, 2), value=encode(seen))
    assert producer.flush(30) == 0
    end = positions.end_offsets(own, topic)

    def rows(table: pa.Table) -> list[tuple]:
        return sorted(zip(*(table[name].to_pylist() for name in ("partition", "offset", "user", "item", "score",
                                                                  "confidence"))))

    on_driver = job.read_on_driver(own, topic, {}, end)
    assert rows(on_driver) == rows(job.read_kafka(spark, own, topic, {}, end).toArrow())
    learned = {"view": (1.0, 1.0), "click": (1.0, 4.0), "purchase": (1.0, 20.0), "dismiss": (0.0, 4.0)}
    assert sorted(row[2:] for row in rows(on_driver)) == sorted((s.user, s.item, *learned[s.kind]) for s in events)

    log = job.LogFolder(own.training_log_path)
    log.write("from=0", on_driver)
    version, _, _ = job.train_and_hold_out(spark, own, log, end, TrainParams(rank=4, reg=0.5, iterations=3), "v")
    assert version.global_mean == 0.0 and not version.item_bias.any() and version.d == 5
    rows_of = {int(item): row for row, item in enumerate(version.item_ids)}
    for row, user in enumerate(version.user_ids.tolist()):
        mine = [(rows_of[s.item], *learned[s.kind]) for s in events if s.user == user]
        np.testing.assert_allclose(version.user_vectors[row], closed_form(version, mine, 0.5), atol=1e-5)
    # A log larger than driver_rows: split in Spark, its interactions summed there, the same fit.
    in_spark, _, _ = job.train_and_hold_out(spark, own.replace(driver_rows=0), log, end,
                                            TrainParams(rank=4, reg=0.5, iterations=3), "v")
    np.testing.assert_array_equal(in_spark.user_ids, version.user_ids)
    np.testing.assert_allclose(in_spark.user_vectors, version.user_vectors, atol=1e-5)
    np.testing.assert_allclose(in_spark.item_factors, version.item_factors, atol=1e-5)
    np.testing.assert_array_equal(in_spark.interactions[1], version.interactions[1])
