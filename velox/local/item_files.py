"""``velox load items``: items' attributes from a file, checked (``velox.schemas.item_attributes``).

Three formats, recognised by the file:

* MovieLens's ``u.item`` (pipe-separated: id, title, release date, video date, URL, then 19 genre
  flags in ``u.genre``'s order): each item's genres as a list and its release year as a number;
* JSON lines (``.jsonl``, ``.ndjson``, ``.json``, or a first line starting with ``{``): one object
  per line, the item id in the field ``item`` names, the other fields its attributes;
* CSV with a header: the item id in the column ``item`` names, the others (or those listed in
  ``columns``) its attributes: a number is a number, a cell holding ``|`` a list of strings
  (``movies.csv``'s ``Adventure|Animation``), any other cell a string; an empty cell is no attribute.

A bad row is refused naming its line and field, before anything is written.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from velox.errors import InvalidAttributes, VeloxError
from velox.schemas import ids, item_attributes
from velox.schemas.item_attributes import Attributes

Row = tuple[int | str, Attributes]

GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")
U_ITEM_FIELDS = 5 + len(GENRES)
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")


def read_items(path: Path, item: str = "item", columns: Sequence[str] | None = None) -> list[Row]:
    """Every item's attributes in the file, in file order (see the module for the formats)."""
    if not path.is_file():
        raise VeloxError(f"no items file at {path}")
    text = path.read_text(encoding="latin-1" if path.name == "u.item" else "utf-8")
    first = next((line for line in text.splitlines() if line.strip()), "")
    if path.name == "u.item" or first.count("|") == U_ITEM_FIELDS - 1:
        return [movielens_item(path, number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if path.suffix in JSON_SUFFIXES or first.lstrip().startswith("{"):
        return [_json_row(path, number, line, item) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    return _csv_rows(path, text, item, columns)


def movielens_item(path: Path, number: int, line: str) -> Row:
    """One line of ``u.item``: its genres (those flagged) and release year (none if no date).

    >>> movielens_item(Path("u.item"), 1, "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1" + "|0" * 13)
    (1, {'genres': ['Animation', "Children's", 'Comedy'], 'year': 1995.0})
    """
    cells = line.rstrip("\r\n").split("|")
    if len(cells) != U_ITEM_FIELDS or any(flag not in ("0", "1") for flag in cells[5:]):
        raise VeloxError(f"{path}, line {number}: expected id, title, dates, URL and {len(GENRES)} genre flags "
                         f"(0 or 1) separated by '|', got {line.strip()[:80]!r}")
    found: dict[str, object] = {"genres": [genre for genre, flag in zip(GENRES, cells[5:]) if flag == "1"]}
    year = cells[2].rpartition("-")[2]
    if year.isdigit():
        found["year"] = int(year)
    return _checked(path, number, cells[0], found)


def _json_row(path: Path, number: int, line: str, item: str) -> Row:
    try:
        fields = json.loads(line)
    except ValueError as exc:
        raise VeloxError(f"{path}, line {number}: not JSON ({exc})") from None
    if not isinstance(fields, dict) or item not in fields:
        raise VeloxError(f"{path}, line {number}: expected a JSON object with the item id in {item!r}")
    given = fields.pop(item)
    return _checked(path, number, given if isinstance(given, int) and not isinstance(given, bool) else str(given), fields)


def _csv_rows(path: Path, text: str, item: str, columns: Sequence[str] | None) -> list[Row]:
    rows = csv.reader(text.splitlines())
    header = next(rows, None)
    if header is None:
        raise VeloxError(f"{path} is empty: a CSV of items starts with a header")
    wanted = list(columns) if columns else [name for name in header if name != item]
    if missing := [name for name in (item, *wanted) if name not in header]:
        raise VeloxError(f"{path}: no column {missing[0]!r} in the header ({', '.join(header)})")
    found = []
    for number, cells in enumerate(rows, 2):
        if not cells:
            continue
        cells += [""] * (len(header) - len(cells))
        fields = {name: _cell(cells[header.index(name)]) for name in wanted if cells[header.index(name)].strip()}
        found.append(_checked(path, number, cells[header.index(item)], fields))
    return found


def _cell(text: str) -> object:
    """A CSV cell as an attribute's value: a number, a list (``a|b``) or a string."""
    try:
        return float(text)
    except ValueError:
        return [part for part in text.split("|") if part] if "|" in text else text


def _checked(path: Path, number: int, item: int | str, fields: object) -> Row:
    given = ids.given(item) if isinstance(item, str) else item
    if (why := ids.problem(given)) is not None:
        raise VeloxError(f"{path}, line {number}: the item id {item!r}: {why}")
    try:
        return given, item_attributes.checked(fields)
    except InvalidAttributes as exc:
        raise VeloxError(f"{path}, line {number}: {exc}") from None
