"""Retraining quality and cost on MovieLens 100k, against a bare Spark ALS fit in the same run.

1. End to end: all of ``u.data`` produced to Kafka in event-time order, a worker caught up; then
   the wall time from ``velox retrain`` starting (Spark session, Kafka read, Parquet append, fit,
   validation, model store, activation) to the worker logging its swap to the new version. Cold:
   the CLI's new Spark session; warm: the controller's kept session, the training log emptied
   first so that each run reads all 100,000 ratings from Kafka again.
2. Ceiling: a bare ``pyspark.ml.recommendation.ALS.fit`` on the same ratings with the same rank,
   regParam, maxIter and seed, in a warm session (no biases, no Kafka, no collection).
3. Five folds: for K in 1..5, ``velox.batch.train.fit`` on ``uK.base`` and the RMSE of the version's
   static scores (no online updates) on ``uK.test``, with the wall time of each fit.

    python bench/retrain.py [--folds-only] [--json bench/results/retrain.json]

References on MovieLens 100k: Spark ALS rank 10 on a 75/25 split, RMSE 0.967; Surprise SVD, 0.936.
The data is ``../shared/data/ml-100k`` beside the checkout; without it this prints why and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pyspark.ml.recommendation import ALS
from pyspark.sql import DataFrame, SparkSession
from stream import write_json  # bench/stream.py

from velox import processes
from velox.batch.job import WarmJob, retrain
from velox.batch.train import (
    ALS_BLOCKS,
    TrainParams,
    als_blocks,
    fit,
    rmse,
    spark_session,
)
from velox.control import topics
from velox.kafka import positions
from velox.local.broker import throwaway_broker
from velox.local.loader import produce, read_movielens
from velox.schemas.model_version import VersionInfo
from velox.settings import Settings

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-100k"
FOLDS = range(1, 6)


def read(spark: SparkSession, path: Path) -> DataFrame:
    """One MovieLens 100k split: tab-separated user, item, rating, timestamp."""
    return spark.read.csv(str(path), sep="\t", schema="user LONG, item LONG, score DOUBLE, time LONG")


def five_fold(data_dir: Path, params: TrainParams) -> list[float]:
    """The test RMSE of each fold; prints it with the fit's wall time."""
    spark = spark_session()
    errors = []
    with tempfile.TemporaryDirectory(prefix="velox-bench-retrain-") as scratch:
        for k in FOLDS:
            started = time.perf_counter()
            version = fit(read(spark, data_dir / f"u{k}.base"), params, f"ml-100k-u{k}", scratch, Settings().driver_rows)
            seconds = time.perf_counter() - started
            errors.append(rmse(version, read(spark, data_dir / f"u{k}.test")))
            print(f"fold {k}: RMSE {errors[-1]:.4f}, fit {seconds:.1f} s", flush=True)
    print(f"mean RMSE over {len(errors)} folds: {statistics.mean(errors):.4f}", flush=True)
    return errors


def bare_als_seconds(data_dir: Path, params: TrainParams, blocks: int = ALS_BLOCKS) -> float:
    """Wall time of ALS.fit alone on u.data in a warm session: the floor under any retrain built on it.

    With Spark's default blocks (the issue's yardstick), or with the job's own, so that the ratio
    shows the job's overhead apart from what its block count saves in ALS itself.
    """
    als = ALS(rank=params.rank, regParam=params.reg, maxIter=params.iterations, seed=params.seed,
              numUserBlocks=blocks, numItemBlocks=blocks, userCol="user", itemCol="item", ratingCol="score")
    spark = spark_session()
    ratings = read(spark, data_dir / "u.data").cache()
    ratings.count()
    started = time.perf_counter()
    als.fit(ratings).itemFactors.count()
    seconds = time.perf_counter() - started
    ratings.unpersist()
    print(f"bare ALS.fit on u.data, {blocks} blocks per side: {seconds:.1f} s", flush=True)
    return seconds


def end_to_end(data_dir: Path, params: TrainParams, warmups: int = 2, repeats: int = 3) -> dict[str, Any]:
    """Seconds from ``velox retrain`` starting to a worker serving the new version, with ml-100k in Kafka;
    and the bare fits, each run between two warm retrains in the same session (medians of ``repeats``
    after ``warmups`` rounds), so that neither side gets a JVM the other warmed up."""
    events = sorted(read_movielens(data_dir / "u.data"), key=lambda event: event.time)
    with tempfile.TemporaryDirectory() as work, throwaway_broker(Settings.from_env(data=Path(work))) as base:
        settings = base.replace(namespace="bench-", partitions=4, worker_metrics_port=0)
        topics.ensure(settings)
        produce(settings, events, total=len(events))
        log_path = Path(work) / "worker.log"
        worker = processes.spawn(settings, log_path, "worker")
        try:
            while positions.lag(settings, settings.app_id, settings.topic("observations")) > 0:
                time.sleep(0.5)
            cold, info = timed_swap(lambda: retrain(settings, params, reason="bench"), log_path)
            warm_job = WarmJob(settings, params)  # as `velox retrain --watch` runs it: one session kept

            def from_scratch(reason: str) -> VersionInfo:  # the whole of ml-100k read from Kafka again
                shutil.rmtree(settings.training_log_path)
                return warm_job(reason)

            warm, bare, bare_job_blocks = [], [], []
            try:
                # The JIT keeps speeding ALS up over the first runs (each fit faster than the last): rounds
                # before ``warmups`` are not counted, for either side.
                for round_ in range(warmups + repeats):
                    timings = (timed_swap(lambda: from_scratch("bench"), log_path)[0], bare_als_seconds(data_dir, params),
                               bare_als_seconds(data_dir, params, als_blocks(warm_job.spark)))
                    if round_ >= warmups:
                        for found, seconds in zip((warm, bare, bare_job_blocks), timings):
                            found.append(seconds)
            finally:
                warm_job.close()
        finally:
            processes.stop(worker)
    figures = {"end_to_end_s": cold, "end_to_end_warm_s": statistics.median(warm), "validation_rmse": info.validation_rmse,
               "training_rows": info.training_rows, "bare_als_fit_s": statistics.median(bare),
               "bare_als_fit_job_blocks_s": statistics.median(bare_job_blocks), "warmups": warmups, "repeats": repeats}
    print(f"end to end, cold `velox retrain` (new Spark session): {cold:.1f} s; with the controller's warm session: "
          f"{figures['end_to_end_warm_s']:.1f} s, median of {' '.join(f'{s:.1f}' for s in warm)} (validation RMSE "
          f"{info.validation_rmse:.4f} on the recent holdout)", flush=True)
    return figures


def timed_swap(run: Callable[[], VersionInfo], worker_log: Path) -> tuple[float, VersionInfo]:
    """Seconds from starting a retrain to the worker logging its swap to the new version."""
    started = time.perf_counter()
    info = run()
    while f"swapped to version {info.id}" not in worker_log.read_text():
        time.sleep(0.01)
    return time.perf_counter() - started, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds-only", action="store_true", help="only the five-fold part")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    if not (DATA / "u1.base").exists():
        print(f"skipped: MovieLens 100k is not at {DATA} (expected u1.base ... u5.test there)")
        return
    params = TrainParams()
    print(f"params: {params}", flush=True)
    figures: dict[str, Any] = {"params": asdict(params)}
    if not args.folds_only:
        figures.update(end_to_end(DATA, params))
        for kind in ("", "_warm"):
            figures[f"ratio{kind}"] = figures[f"end_to_end{kind}_s"] / figures["bare_als_fit_s"]
        figures["ratio_warm_job_blocks"] = figures["end_to_end_warm_s"] / figures["bare_als_fit_job_blocks_s"]
        print(f"end to end / bare ALS fit: {figures['ratio']:.2f} cold, {figures['ratio_warm']:.2f} warm "
              f"(target at most 1.5); warm / bare fit with the job's blocks: {figures['ratio_warm_job_blocks']:.2f}",
              flush=True)
    spark = spark_session()
    try:
        errors = five_fold(DATA, params)
    finally:
        spark.stop()
    figures.update({"fold_rmse": errors, "mean_rmse": statistics.mean(errors)})
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
