"""What a user's feedback rewards: a rating by its error, once per item answered; an interaction by
itself, once per decision; on interactions, a decision nobody acted on earns 0."""

from __future__ import annotations

import pytest

from velox.schemas.application import Decision
from velox.serving.rewards import RECENT, PendingDecisions


def decision(name: str, at: float = 100.0, items: tuple[str, ...] = ("1", "2"), user: int = 7) -> Decision:
    return Decision(name, "shop", user, "default", 0.5, "thompson", at, False, {item: 0.5 for item in items})


def test_a_rating_rewards_the_latest_decision_that_answered_its_item_once_per_item() -> None:
    pending = PendingDecisions(implicit=False, window_s=60.0)
    pending.keep(decision("a", items=("1",)))
    pending.keep(decision("b", items=("2",)))
    assert [(d.id, r) for d, r in pending.rewards("shop", "7", "1", 1.5)] == [("a", 0.5)]  # 1 / (1 + 1²)
    assert pending.rewards("shop", 7, "1", 1.5) == []  # that item's score was rewarded already
    assert [d.id for d, _ in pending.rewards("shop", 7, "2", 0.5)] == ["b"]
    assert pending.expired(now=1e9) == []  # ratings never expire a decision


@pytest.mark.parametrize("preference", [1.0, 0.0], ids=["click", "dismiss"])
def test_an_interaction_rewards_its_decision_with_its_preference_once(preference: float) -> None:
    pending = PendingDecisions(implicit=True, window_s=60.0)
    pending.keep(decision("a"))
    assert [(d.id, r) for d, r in pending.rewards("shop", 7, "2", preference)] == [("a", preference)]
    assert pending.rewards("shop", 7, "1", 1.0) == []  # a second item of the same answer: not again
    assert pending.expired(now=1e9) == []  # rewarded: not earning 0 as well


def test_on_interactions_a_decision_nobody_acted_on_earns_zero_when_it_expires_or_is_pushed_out() -> None:
    pending = PendingDecisions(implicit=True, window_s=60.0)
    assert pending.keep(decision("old", at=10.0)) == []
    for n in range(RECENT - 1):
        assert pending.keep(decision(f"d{n}", at=100.0 + n)) == []
    assert [d.id for d in pending.keep(decision("newest", at=200.0))] == ["old"]  # pushed out unrewarded
    assert pending.expired(now=100.0 + 60.0 + 0.5) == [decision("d0", at=100.0)]
    assert pending.keep(decision("other user", user=8)) == []  # each user's decisions apart
