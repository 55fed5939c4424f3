import pytest

from velox.errors import InvalidObservation
from velox.schemas import observation
from velox.schemas.feedback import EXPLICIT, Feedback
from velox.schemas.observation import Observation
from velox.settings import Settings

IMPLICIT = Feedback(implicit=True, confidences=Settings(confidence="view=1,click=4,purchase=20,dismiss=-4").confidences)


def seen(**fields: object) -> Observation:
    return Observation(user=1, item=2, time=0.0, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "target"), [
    ("view", (1.0, 1.0)), ("click", (1.0, 4.0)), ("purchase", (1.0, 20.0)), ("dismiss", (0.0, 4.0)),
])
def test_kinds_map_to_a_preference_and_its_confidence(kind: str, target: tuple[float, float]) -> None:
    assert IMPLICIT.target(seen(kind=kind)) == IMPLICIT.target(seen(kind=kind, score=2.0)) == target


def test_an_explicit_system_learns_the_score_whatever_the_kind() -> None:
    assert EXPLICIT.target(seen(score=4.5)) == EXPLICIT.target(seen(score=4.5, kind="like")) == (4.5, 1.0)


@pytest.mark.parametrize(("feedback", "event", "field", "words"), [
    (IMPLICIT, seen(kind="share"), "kind", "unknown kind 'share': this system knows click, dismiss, purchase, view (VELOX_CONFIDENCE)"),
    (IMPLICIT, seen(score=5.0), "kind", "learns from kinds (implicit feedback); the event has only a score"),
    (EXPLICIT, seen(kind="click"), "score", "learns from scores (explicit feedback); the event has only a kind"),
])
def test_what_a_system_cannot_learn_from_is_invalid_with_the_reason(
    feedback: Feedback, event: Observation, field: str, words: str,
) -> None:
    with pytest.raises(InvalidObservation) as caught:
        feedback.target(event)
    assert caught.value.field == field and words in caught.value.reason


def test_readers_count_only_what_the_system_learns_from() -> None:
    click, rating = observation.encode(seen(kind="click")), observation.encode(seen(score=3.0))
    assert observation.counted(b"1", click, 0, 1) is None  # a reader of ratings
    assert observation.counted(b"1", rating, 0, 1) is not None
    assert observation.counted(b"1", click, 0, 1, IMPLICIT.target) is not None
    assert observation.counted(b"1", rating, 0, 1, IMPLICIT.target) is None
