"""Items' attributes: what is accepted, and every refusal naming its field."""

from __future__ import annotations

import pytest

from velox.errors import InvalidAttributes
from velox.schemas import item_attributes


def test_strings_lists_and_numbers_are_attributes() -> None:
    given = b'{"brand": "Acme", "tags": ["red", "wool"], "price": 12, "year": 1995.5}'
    decoded = item_attributes.decode(given)
    assert decoded == {"brand": "Acme", "price": 12.0, "tags": ["red", "wool"], "year": 1995.5}
    assert item_attributes.decode(item_attributes.encode(decoded)) == decoded


@pytest.mark.parametrize(("body", "field"), [
    (b'{"year": true}', "year"),
    (b'{"year": null}', "year"),
    (b'{"size": {"w": 1}}', "size"),
    (b'{"tags": ["a", 3]}', "tags"),
    (b'{"price": 1e400}', ""),  # not JSON msgspec reads: the whole record
    (b'{"": "x"}', ""),
    (b'["a"]', ""),
    (b'{not json', ""),
    (b'{"title": "' + b"x" * 2000 + b'"}', "title"),
])
def test_bad_attributes_are_refused_naming_the_field(body: bytes, field: str) -> None:
    with pytest.raises(InvalidAttributes) as refused:
        item_attributes.decode(body)
    assert refused.value.field == field
    assert refused.value.reason
