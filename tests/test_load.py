from pathlib import Path

import pytest

from velox.load import PYSPARK_SAMPLE, read_movielens
from velox.schemas.observation import Observation


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n"),
        ("ratings.dat", "196::242::3::881250949\n186::302::3::891717742\n"),
        ("ratings.csv", "userId,movieId,rating,timestamp\n196,242,3.0,881250949\n186,302,3.0,891717742\n"),
    ],
)
def test_read_movielens_formats(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert read_movielens(path) == [
        Observation(user=196, item=242, score=3.0, time=881250949.0),
        Observation(user=186, item=302, score=3.0, time=891717742.0),
    ]


def test_the_pyspark_sample_is_always_there() -> None:
    ratings = read_movielens(PYSPARK_SAMPLE)
    assert len(ratings) == 1501
    assert len({r.user for r in ratings}) == 30
