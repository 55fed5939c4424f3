import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from velox.errors import InvalidObservation
from velox.schemas import observation
from velox.schemas.observation import MAX_ID, Observation

VALID = {"user": 22, "item": 27632, "score": 4.5, "time": 881250949.0}


def event(**changes: object) -> bytes:
    fields = {**VALID, **changes}
    return json.dumps({key: value for key, value in fields.items() if value is not ...}).encode()


def test_decode_valid_event() -> None:
    decoded = observation.decode(event(context={"device": "tv", "slot": 3}))
    assert decoded == Observation(22, 27632, 4.5, 881250949.0, {"device": "tv", "slot": 3})
    assert decoded.key == b"22"


def test_encode_decode_round_trip() -> None:
    original = Observation(user=MAX_ID, item=0, score=-1.25, time=0.0)
    assert observation.decode(observation.encode(original)) == original


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        (b"not json", "", "not a JSON observation"),
        (event(user=...), "user", "missing required field"),
        (event(item="27632"), "item", "Expected `int`, got `str`"),
        (event(score="high"), "score", "Expected `float`, got `str`"),
        (event(score=True), "score", "Expected `float`, got `bool`"),
        (b'{"user":1,"item":2,"score":1e999,"time":1}', "score", "must be finite"),
        (b'{"user":1,"item":2,"score":NaN,"time":1}', "", "not a JSON observation"),
        (event(user=-1), "user", ">= 0"),
        (event(item=MAX_ID + 1), "item", "<= 9223372036854775807"),
        (event(user=1.5), "user", "Expected `int`, got `float`"),
        (event(time=-5), "time", ">= 0"),
        (event(context={"tags": ["a"]}), "context", "got `array`"),
        (event(colour="red"), "colour", "unknown field"),
    ],
)
def test_decode_bad_event_names_field_and_reason(data: bytes, field: str, reason: str) -> None:
    with pytest.raises(InvalidObservation) as caught:
        observation.decode(data)
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_python_caller_cannot_build_non_finite_score() -> None:
    with pytest.raises(ValueError, match="score must be a finite number"):
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
        assert 0 <= decoded.user <= MAX_ID and 0 <= decoded.item <= MAX_ID
        assert math.isfinite(decoded.score) and decoded.time >= 0


def test_json_schema_file_matches_the_python_type() -> None:
    path = Path(observation.__file__).with_name("observation.schema.json")
    assert json.loads(path.read_text()) == observation.json_schema()
