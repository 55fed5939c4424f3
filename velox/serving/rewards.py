"""Which of a user's recent decisions their feedback rewards, and by how much.

On ratings (explicit feedback) a rating of an item a decision answered rewards the chosen model
by the error of its score (``velox.model.policies.reward_of``), once per item answered. On
interactions (implicit feedback) there is no score to compare: the interaction itself is the
reward, 1 for a positive kind and 0 for a negative one ("dismiss"), once per decision; and a
decision that no interaction follows within ``window_s``, or that the user's later decisions push
out, earns 0. Without that zero, a model whose answers users ignore would never be told so.

>>> from velox.schemas.application import Decision
>>> pending = PendingDecisions(implicit=True, window_s=60.0)
>>> shown = Decision("d1", "shop", 7, "default", 0.5, "thompson", 100.0, False, {"3": 0.9, "4": 0.2})
>>> pending.keep(shown)
[]
>>> [(d.id, r) for d, r in pending.rewards("shop", 7, "4", 1.0)], pending.rewards("shop", 7, "3", 1.0)
([('d1', 1.0)], [])
>>> pending.keep(Decision("d2", "shop", 7, "default", 0.5, "thompson", 100.0, False, {"5": 0.1}))
[]
>>> [d.id for d in pending.expired(now=161.0)]
['d2']
"""

from __future__ import annotations

from collections import deque

from velox.model.policies import reward_of
from velox.schemas.application import Decision

RECENT = 32  # decisions kept per app and user for their feedback to reward


class PendingDecisions:
    """Each (app, user)'s recent decisions, newest last: feedback may come after later requests."""

    def __init__(self, implicit: bool, window_s: float) -> None:
        self.implicit, self.window_s = implicit, window_s
        self.recent: dict[tuple[str, str], deque[Decision]] = {}

    def __len__(self) -> int:
        return len(self.recent)

    def keep(self, decision: Decision) -> list[Decision]:
        """Keep ``decision``; the decisions it pushes out unrewarded, which earn 0 (implicit feedback)."""
        recent = self.recent.setdefault((decision.app, str(decision.user)), deque(maxlen=RECENT))
        out = [recent[0]] if len(recent) == RECENT and self.implicit else []
        recent.append(decision)
        return out

    def rewards(self, app: str, user: int | str, item: str, target: float) -> list[tuple[Decision, float]]:
        """The decisions that feedback on ``item`` (a rating, or an interaction's preference) rewards."""
        recent = self.recent.get((app, str(user)), ())
        decision = next((d for d in reversed(recent) if item in d.predictions), None)
        if decision is None:
            return []
        if not self.implicit:
            return [(decision, reward_of(target - decision.predictions.pop(item)))]
        recent.remove(decision)  # type: ignore[union-attr]
        return [(decision, target)]

    def expired(self, now: float) -> list[Decision]:
        """Decisions older than the window that no interaction rewarded (implicit feedback), let go."""
        if not self.implicit:
            return []
        out: list[Decision] = []
        for recent in list(self.recent.values()):
            while recent and recent[0].at < now - self.window_s:
                out.append(recent.popleft())
        return out
