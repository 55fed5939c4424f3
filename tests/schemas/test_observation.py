import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from velox.errors import InvalidObservation
from velox.schemas import ids, observation
from velox.schemas.ids import MAX_INT as MAX_ID
from velox.schemas.observation import Observation

VALID = {"user": 22, "item": 27632, "score": 4.5, "time": 881250949.0}


def event(**changes: object) -> bytes:
    fields = {**VALID, **changes}
    return json.dumps({key: value for key, value in fields.items() if value is not ...}).encode()


def test_decode_valid_event() -> None:
    decoded = observation.decode(event(context={"device": "tv", "slot": 3}))
    assert decoded == Observation(user=22, item=27632, score=4.5, time=881250949.0, context={"device": "tv", "slot": 3})
    assert decoded.key == b"22"


def test_an_event_carries_a_kind_instead_of_or_beside_a_score() -> None:
    assert observation.decode(event(score=..., kind="click")) == Observation(user=22, item=27632, time=881250949.0,
                                                                             kind="click")
    both = observation.decode(event(kind="purchase"))
    assert (both.score, both.kind) == (4.5, "purchase")
    assert observation.decode(observation.encode(both)) == both


def test_encode_decode_round_trip() -> None:
    original = Observation(user=MAX_ID, item=0, score=-1.25, time=0.0)
    assert observation.decode(observation.encode(original)) == original


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        (b"not json", "", "not a JSON observation"),
        (event(user=...), "user", "missing required field"),
        (event(item=["27632"]), "item", "Expected `int | str`, got `array`"),
        (event(score="high"), "score", "Expected `float | null`, got `str`"),
        (event(score=True), "score", "Expected `float | null`, got `bool`"),
        (b'{"user":1,"item":2,"score":1e999,"time":1}', "score", "must be finite"),
        (b'{"user":1,"item":2,"score":NaN,"time":1}', "", "not a JSON observation"),
        (event(user=-1), "user", ">= 0"),
        (event(item=MAX_ID + 1), "item", "<= 9223372036854775807"),
        (event(user=1.5), "user", "Expected `int | str`, got `float`"),
        (event(user=""), "user", "an id is not empty"),
        (event(item="x" * 257), "item", "an id is at most 256 bytes of UTF-8, got 257"),
        (event(item="é" * 129), "item", "at most 256 bytes of UTF-8, got 258"),
        (event(user="a\tb"), "user", "an id has no control characters"),
        (event(user="a\u007fb"), "user", "an id has no control characters"),
        (b'{"user":"\xff\xfe","item":2,"score":1,"time":1}', "user", "valid UTF-8"),
        (b'{"user":1,"item":"ok\xc3","score":1,"time":1}', "item", "valid UTF-8"),
        (event(time=-5), "time", ">= 0"),
        (event(context={"tags": ["a"]}), "context", "got `array`"),
        (event(colour="red"), "colour", "unknown field"),
        (event(score=...), "score", "an event has a score, a kind or both"),
        (event(score=None), "score", "an event has a score, a kind or both"),
        (event(kind=""), "kind", "length >= 1"),
        (event(kind="Add To Cart"), "kind", "matching regex"),
        (event(kind="x" * 33), "kind", "length <= 32"),
    ],
)
def test_decode_bad_event_names_field_and_reason(data: bytes, field: str, reason: str) -> None:
    with pytest.raises(InvalidObservation) as caught:
        observation.decode(data)
    assert caught.value.field == field
    assert reason in caught.value.reason


@pytest.mark.parametrize(("user", "item"), [
    ("3f1c9a2e-5b7d-4e8f-9a0b-1c2d3e4f5a6b", "B07XJ8C8F5"), ("ana@example.com", "news/2026/12/07/kafka-4-2"),
    ("a,b", "50% off"), ("Zoë Ångström", "spaces in it"), ("42", "007"),
])
def test_string_ids_round_trip_and_the_key_is_the_users_utf8(user: str, item: str) -> None:
    decoded = observation.decode(event(user=user, item=item))
    assert (decoded.user, decoded.item, decoded.key) == (user, item, user.encode())
    assert observation.decode(observation.encode(decoded)) == decoded


def test_an_integer_id_and_its_decimal_string_are_one_id() -> None:
    assert observation.decode(event(user="22")).key == observation.decode(event(user=22)).key == b"22"
    assert ids.code("22") == ids.code(22) == 22 and ids.code("022") < 0 and ids.code("x") != ids.code("y")
    assert ids.given("22") == 22 and ids.given("022") == "022" and ids.given(str(MAX_ID + 1)) == str(MAX_ID + 1)


def test_python_caller_cannot_build_non_finite_score() -> None:
    with pytest.raises(ValueError, match="score: must be a finite number"):
        Observation(user=1, item=2, score=math.nan, time=0.0)


@given(st.binary(max_size=256))
def test_decode_arbitrary_bytes_returns_event_or_clear_error(data: bytes) -> None:
    try:
        decoded = observation.decode(data)
    except InvalidObservation as exc:
        assert exc.reason
    else:
        assert isinstance(decoded, Observation)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@given(st.dictionaries(st.sampled_from(["user", "item", "score", "time", "context", "x"]), json_values))
def test_decode_arbitrary_json_objects_returns_valid_event_or_clear_error(fields: dict[str, object]) -> None:
    data = json.dumps(fields).encode()
    try:
        decoded = observation.decode(data)
    except InvalidObservation as exc:
        assert exc.field in {"", "user", "item", "score", "time", "context", "x"}
        assert exc.reason
    else:
        assert ids.problem(decoded.user) is None and ids.problem(decoded.item) is None
        assert decoded.score is not None and math.isfinite(decoded.score) and decoded.time >= 0


def test_json_schema_file_matches_the_python_type() -> None:
    path = Path(observation.__file__).with_name("observation.schema.json")
    assert json.loads(path.read_text()) == observation.json_schema()
