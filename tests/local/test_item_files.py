"""``velox load items``' files: MovieLens's u.item, JSON lines and CSV, and bad rows named by line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from velox.errors import VeloxError
from velox.local.item_files import read_items

U_ITEM = Path(__file__).parents[3] / "shared" / "data" / "ml-100k" / "u.item"


def test_u_item_gives_genres_and_year(tmp_path: Path) -> None:
    path = tmp_path / "u.item"
    path.write_text("1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
                    "267|unknown||||1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n", encoding="latin-1")
    assert read_items(path) == [(1, {"genres": ["Animation", "Children's", "Comedy"], "year": 1995.0}),
                                (267, {"genres": ["unknown"]})]


@pytest.mark.skipif(not U_ITEM.is_file(), reason=f"MovieLens 100k is not at {U_ITEM}")
def test_movielens_100k_items_all_read() -> None:
    rows = read_items(U_ITEM)
    assert len(rows) == 1682 and all(row[1]["genres"] for row in rows)


def test_json_lines_and_csv(tmp_path: Path) -> None:
    lines = tmp_path / "items.jsonl"
    lines.write_text('{"item": "sku-1", "brand": "Acme", "tags": ["a"]}\n\n{"item": 7, "price": 3}\n')
    assert read_items(lines) == [("sku-1", {"brand": "Acme", "tags": ["a"]}), (7, {"price": 3.0})]
    table = tmp_path / "movies.csv"
    table.write_text('movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n2,Jumanji,\n')
    assert read_items(table, item="movieId", columns=["genres"]) == [(1, {"genres": ["Adventure", "Animation"]}),
                                                                      (2, {})]


@pytest.mark.parametrize(("name", "text", "said"), [
    ("items.jsonl", '{"item": 1, "year": true}\n', "line 1: year:"),
    ("items.jsonl", '{"sku": 1}\n', "line 1: expected a JSON object with the item id in 'item'"),
    ("items.csv", "item,year\n1,1995\n\x01,3\n", "line 3: the item id"),
    ("items.csv", "sku,year\n1,1995\n", "no column 'item'"),
    ("u.item", "1|Toy|01-Jan-1995||x|0|0\n", "line 1: expected id, title"),
])
def test_bad_rows_are_named(tmp_path: Path, name: str, text: str, said: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(VeloxError, match=said):
        read_items(path)
