"""An item's attributes: the records of the compacted ``items`` topic, keyed by the item id's UTF-8
bytes (``velox.schemas.ids.key``), and the body of ``POST /v1/items/{id}``.

A JSON object of at most ``MAX_FIELDS`` fields, each named by a non-empty string and valued by a
string (a category: "brand", "genre"), a list of strings (tags) or a finite number (a year, a
price). Anything else is refused naming the field: a feature function (``velox.model.item_features``)
gets only values it can make a vector of. A null record deletes the item's attributes.

>>> decode(b'{"genres": ["Comedy", "Drama"], "year": 1995}')
{'genres': ['Comedy', 'Drama'], 'year': 1995.0}
>>> decode(b'{"year": 1995, "new": true}')
Traceback (most recent call last):
...
velox.errors.InvalidAttributes: new: a value is a string, a list of strings or a finite number, got bool
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import msgspec

from velox.errors import InvalidAttributes

MAX_FIELDS = 256
MAX_TEXT = 1024  # characters of a string value or a tag
MAX_TAGS = 1024

Value = str | list[str] | float
Attributes = dict[str, Value]

_encoder = msgspec.json.Encoder()


def checked(fields: object) -> Attributes:
    """``fields`` as attributes (numbers as floats), or InvalidAttributes naming the first bad field."""
    if not isinstance(fields, Mapping):
        raise InvalidAttributes("", f"attributes are a JSON object, got {type(fields).__name__}")
    if len(fields) > MAX_FIELDS:
        raise InvalidAttributes("", f"at most {MAX_FIELDS} attributes, got {len(fields)}")
    found: Attributes = {}
    for name, value in sorted(fields.items(), key=lambda pair: str(pair[0])):  # the first bad one in name order
        if not isinstance(name, str) or not name or not name.isprintable():
            raise InvalidAttributes(str(name), "an attribute's name is a non-empty printable string")
        found[name] = _value(name, value)
    return found


def _value(name: str, value: object) -> Value:
    if isinstance(value, bool) or value is None:
        raise InvalidAttributes(name, f"a value is a string, a list of strings or a finite number, got "
                                      f"{'null' if value is None else 'bool'}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or abs(value) > 1e300:
            raise InvalidAttributes(name, f"a number is finite, got {value}")
        return float(value)
    if isinstance(value, str):
        return _text(name, value)
    if isinstance(value, list):
        if len(value) > MAX_TAGS:
            raise InvalidAttributes(name, f"a list holds at most {MAX_TAGS} strings, got {len(value)}")
        if not all(isinstance(tag, str) for tag in value):
            raise InvalidAttributes(name, "a list holds strings only")
        return [_text(name, tag) for tag in value]
    raise InvalidAttributes(name, f"a value is a string, a list of strings or a finite number, got {type(value).__name__}")


def _text(name: str, text: str) -> str:
    if len(text) > MAX_TEXT:
        raise InvalidAttributes(name, f"a string is at most {MAX_TEXT} characters, got {len(text)}")
    return text


def decode(data: bytes) -> Attributes:
    """Attributes from JSON bytes, or InvalidAttributes naming the field (or the whole record)."""
    try:
        fields = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise InvalidAttributes("", f"not a JSON object of attributes: {exc}") from None
    return checked(fields)


def encode(attributes: Attributes) -> bytes:
    return _encoder.encode(attributes)
