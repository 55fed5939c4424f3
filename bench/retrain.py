"""Retraining quality and cost on MovieLens 100k, against a bare Spark ALS fit.

1. Five folds: for K in 1..5, ``velox.batch.train.fit`` on ``uK.base`` and the RMSE of the version's
   static scores (no online updates) on ``uK.test``, with the wall time of each fit.
2. Ceiling: a bare ``pyspark.ml.recommendation.ALS.fit`` on ``u1.base`` with the same rank,
   regParam, maxIter and seed (no biases, no collection into a version).

    python bench/retrain.py --folds-only [--json bench/results/retrain.json]

References on MovieLens 100k: Spark ALS rank 10 on a 75/25 split, RMSE 0.967; Surprise SVD, 0.936.
The data is ``../shared/data/ml-100k`` beside the checkout; without it this prints why and exits 0.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict
from pathlib import Path

from pyspark.ml.recommendation import ALS
from pyspark.sql import DataFrame, SparkSession

from velox.batch.train import TrainParams, fit, rmse, spark_session

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-100k"
FOLDS = range(1, 6)


def read(spark: SparkSession, path: Path) -> DataFrame:
    """One MovieLens 100k split: tab-separated user, item, rating, timestamp."""
    return spark.read.csv(str(path), sep="\t", schema="user LONG, item LONG, score DOUBLE, time LONG")


def five_fold(data_dir: Path, params: TrainParams) -> list[float]:
    """The test RMSE of each fold; prints it with the fit's wall time."""
    spark = spark_session()
    errors = []
    for k in FOLDS:
        started = time.perf_counter()
        version = fit(read(spark, data_dir / f"u{k}.base"), params, f"ml-100k-u{k}")
        seconds = time.perf_counter() - started
        errors.append(rmse(version, read(spark, data_dir / f"u{k}.test")))
        print(f"fold {k}: RMSE {errors[-1]:.4f}, fit {seconds:.1f} s", flush=True)
    print(f"mean RMSE over {len(errors)} folds: {statistics.mean(errors):.4f}", flush=True)
    return errors


def bare_als_seconds(data_dir: Path, params: TrainParams) -> float:
    """Wall time of ALS.fit alone on u1.base: the floor under any retrain built on it."""
    als = ALS(rank=params.rank, regParam=params.reg, maxIter=params.iterations, seed=params.seed,
              userCol="user", itemCol="item", ratingCol="score")
    ratings = read(spark_session(), data_dir / "u1.base")
    started = time.perf_counter()
    als.fit(ratings)
    seconds = time.perf_counter() - started
    print(f"bare ALS.fit on u1.base: {seconds:.1f} s", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds-only", action="store_true", help="only the five-fold part (today the only one)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if not (DATA / "u1.base").exists():
        print(f"skipped: MovieLens 100k is not at {DATA} (expected u1.base ... u5.test there)")
        return
    params = TrainParams()
    print(f"params: {params}", flush=True)
    spark = spark_session()
    try:
        errors = five_fold(DATA, params)
        bare = bare_als_seconds(DATA, params)
    finally:
        spark.stop()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        figures = {"params": asdict(params), "fold_rmse": errors, "mean_rmse": statistics.mean(errors),
                   "bare_als_fit_seconds_u1": bare}
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
