"""A scikit-learn model of ratings from MovieLens metadata, served to apps as a Velox model container.

It knows nothing of user ids' histories: a user is their age, gender and occupation (``u.user``),
a movie its genres (``u.item``), and a gradient-boosted regressor maps the pair to a rating.
Train it, then serve it beside the split model:

    python examples/sklearn_ratings.py ../shared/data/ml-100k     # writes examples/sklearn_ratings.pkl
    velox container run examples.sklearn_ratings:model --name genre-gbm --replicas 2
    velox app link movies genre-gbm

The pickle holds the fitted regressor and the feature tables derived from the data set; it is
made on your machine (MovieLens' licence forbids redistributing the data) and never committed.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor

from velox.schemas.container_rpc import Input

GENRES = 19
DEFAULT = Path(__file__).with_suffix(".pkl")


def users(data: Path) -> dict[int, list[float]]:
    """user id → [age, is female, occupation index]."""
    rows = [line.split("|") for line in (data / "u.user").read_text(encoding="latin-1").splitlines() if line]
    occupations = sorted({row[3] for row in rows})
    return {int(r[0]): [float(r[1]), float(r[2] == "F"), float(occupations.index(r[3]))] for r in rows}


def items(data: Path) -> dict[int, list[float]]:
    """item id → its 19 genre flags."""
    rows = [line.split("|") for line in (data / "u.item").read_text(encoding="latin-1").splitlines() if line]
    return {int(r[0]): [float(flag) for flag in r[-GENRES:]] for r in rows}


class GenreModel:
    """The container's model: ``predict_batch`` scores (user, item) inputs; loads its pickle on first use."""

    def __init__(self, path: Path = DEFAULT) -> None:
        self.path = Path(path)
        self.fitted: dict | None = None

    def predict_batch(self, inputs: list[Input]) -> list[float]:
        if self.fitted is None:
            self.fitted = pickle.loads(self.path.read_bytes())
        fitted = self.fitted
        unknown_user, unknown_item = [np.nan] * 3, [np.nan] * GENRES  # the regressor handles missing values
        rows = np.array([fitted["users"].get(i.user, unknown_user) + fitted["items"].get(i.item, unknown_item)
                         for i in inputs])
        return np.clip(fitted["regressor"].predict(rows), 1.0, 5.0).tolist()


model = GenreModel()


def train(data: Path, out: Path = DEFAULT, seed: int = 0) -> float:
    """Fit on 90% of ``u.data``, save to ``out``; the RMSE on the other 10%."""
    ratings = np.loadtxt(data / "u.data", dtype=np.int64)[:, :3]
    by_user, by_item = users(data), items(data)
    features = np.array([by_user[u] + by_item[i] for u, i, _ in ratings])
    rng = np.random.default_rng(seed)
    test = rng.random(len(ratings)) < 0.1
    regressor = HistGradientBoostingRegressor(max_iter=200, random_state=seed, categorical_features=[2])
    regressor.fit(features[~test], ratings[~test, 2])
    rmse = float(np.sqrt(np.mean((regressor.predict(features[test]) - ratings[test, 2]) ** 2)))
    out.write_bytes(pickle.dumps({"regressor": regressor, "users": by_user, "items": by_item}))
    return rmse


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the ml-100k folder (u.data, u.user, u.item)")
    parser.add_argument("--out", type=Path, default=DEFAULT)
    args = parser.parse_args()
    if not (args.data / "u.data").exists():
        print(f"no MovieLens 100k in {args.data} (u.data, u.user, u.item)", file=sys.stderr)
        return 1
    started = time.monotonic()
    rmse = train(args.data, args.out)
    print(f"trained on {args.data} in {time.monotonic() - started:.1f} s: held-out RMSE {rmse:.4f}; saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
