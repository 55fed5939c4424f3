import numpy as np
import pytest

from velox.experiments.ranking import Judge, events_of
from velox.schemas.observation import Observation


def rating(user: int, item: int, score: float) -> Observation:
    return Observation(user=user, item=item, score=score, time=0.0)


def test_movielens_as_implicit_feedback_every_rating_a_view_a_high_one_a_click_too() -> None:
    assert [(e.item, e.kind) for e in events_of([rating(1, 2, 5.0), rating(1, 3, 3.0)])] == [
        (2, "view"), (2, "click"), (3, "view")]


def test_recall_and_ndcg_at_10_leave_out_what_the_user_saw_before() -> None:
    """User 1 clicked items 3 and 40 in the test; the scorer ranks items by their id, highest first,
    and user 1 saw item 49 before: their top 10 is 48..39, one hit (40) at rank 9 of 2 relevant;
    user 2's is 49..40, their one click (48) at rank 2."""
    judge = Judge.of([rating(1, 49, 5.0), rating(2, 1, 5.0)], [rating(1, 3, 4.0), rating(1, 40, 5.0),
                                                              rating(1, 7, 2.0), rating(2, 48, 4.0)])
    items = np.arange(50)
    found = judge.metrics(items, lambda users: np.tile(items.astype(float), (len(users), 1)))
    user_1_ndcg = (1 / np.log2(10)) / (1 + 1 / np.log2(3))
    assert found["recall_at_10"] == pytest.approx((0.5 + 1.0) / 2)
    assert found["ndcg_at_10"] == pytest.approx((user_1_ndcg + 1 / np.log2(3)) / 2)
    assert judge.metrics(items, lambda users: np.zeros((len(users), 50)), np.array([False, False]))["recall_at_10"] is None
