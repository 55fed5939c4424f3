import re
from pathlib import Path

import pytest

from velox.errors import VeloxError
from velox.local.loader import PYSPARK_SAMPLE, read_csv, read_movielens
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


def test_a_movielens_folder_reads_its_ratings_file(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text("196\t242\t3\t881250949\n")
    (tmp_path / "u.item").write_text("242|Kolya (1996)|...\n")
    assert read_movielens(tmp_path) == [Observation(user=196, item=242, score=3.0, time=881250949.0)]


@pytest.mark.parametrize(
    ("name", "text", "said"),
    [
        ("missing.csv", None, "no ratings file at {path}"),
        ("folder", "", "{path} is a folder without a MovieLens ratings file (u.data, ratings.dat, ratings.csv)"),
        ("empty.csv", "\n\n", "{path} holds no ratings"),
        ("three.csv", "userId,movieId,rating,timestamp\n1,2,3.5,10\n\n1,3,4\n",
         "{path}, line 4: expected user, item, rating and timestamp separated by ',', got '1,3,4'"),
        ("words.dat", "1::two::3::10\n1::2::three::11\n",  # (an item named "two" is an id like any other)
         "{path}, line 2: expected user, item, rating and timestamp separated by '::'"),
    ],
)
def test_a_wrong_ratings_file_is_one_error_naming_the_file_and_line(tmp_path: Path, name: str, text: str | None,
                                                                    said: str) -> None:
    path = tmp_path / name
    if name == "folder":
        path.mkdir()
    elif text is not None:
        path.write_text(text)
    with pytest.raises(VeloxError) as raised:
        read_movielens(path)
    assert str(raised.value).startswith(said.format(path=path))


def test_a_csv_of_feedback_reads_any_ids_by_header_names(tmp_path: Path) -> None:
    path = tmp_path / "clicks.csv"
    path.write_text('when,who,what,stars\n10,ana@example.com,"news/2026/12/07/kafka,4",5\n11,42,B07XJ8C8F5,3.5\n'
                    '12,Zoë,50% off,1\n', encoding="utf-8")
    rated = read_csv(path, "who", "what", "stars", "when")
    assert [(r.user, r.item, r.score, r.time) for r in rated] == [
        ("ana@example.com", "news/2026/12/07/kafka,4", 5.0, 10.0), (42, "B07XJ8C8F5", 3.5, 11.0), ("Zoë", "50% off", 1.0, 12.0)]
    clicks = read_csv(path, "who", "what", 1.0)
    assert {r.score for r in clicks} == {1.0} and all(r.time > 1.7e9 for r in clicks)


@pytest.mark.parametrize(("text", "said"), [
    ("who,what\n1,2\n", "no column 'stars' in the header (who, what)"),
    ("who,what,stars\n1,2,3\n3,,4\n", "line 3, column 'what': an id is not empty"),
    ("who,what,stars\n1,2,high\n", "line 2, column 'stars': 'high' is not a number"),
    ("who,what,stars\n1,2\n", "line 2: no 'stars' column (the row has 2 cells)"),
    ("who,what,stars\n1,a\tb,3\n", "line 2, column 'what': an id has no control characters"),
])
def test_a_bad_csv_row_is_refused_naming_its_line_and_column(tmp_path: Path, text: str, said: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(VeloxError, match=re.escape(said)):
        read_csv(path, "who", "what", "stars")


def test_a_csv_of_interactions_reads_each_rows_kind_or_one_kind_for_every_row(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("who,what,did\nana,SKU-1,view\n42,SKU-2,purchase\n")
    kinds = ["view", "click", "purchase"]
    assert [(e.user, e.item, e.kind, e.score) for e in read_csv(path, "who", "what", None, kind="did", kinds=kinds)] \
        == [("ana", "SKU-1", "view", None), (42, "SKU-2", "purchase", None)]
    assert {e.kind for e in read_csv(path, "who", "what", None, kind="click", kinds=kinds)} == {"click"}
    with pytest.raises(VeloxError, match=re.escape("line 3, column 'did': unknown kind 'purchase' (this system "
                                                   "knows view, click)")):
        read_csv(path, "who", "what", None, kind="did", kinds=["view", "click"])
    with pytest.raises(VeloxError, match=re.escape("no column 'share' in the header (who, what, did), and not a "
                                                   "kind this system knows (view, click, purchase)")):
        read_csv(path, "who", "what", None, kind="share", kinds=kinds)
