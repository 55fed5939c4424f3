"""What an event says to a system: a rating (explicit feedback) or an interaction (implicit).

An explicit system learns each event's ``score``. An implicit one learns each event's ``kind``: an
interaction is preference 1, a negative kind ("dismiss") preference 0, each with its kind's
confidence (Hu, Koren and Volinsky, ICDM 2008: the preference p and the confidence c of an
interaction; the settings' ``confidence`` map). An event without what its system learns from, or
of a kind the system does not know, is a dead letter with that reason: every reader decides so
(``observation.counted``), so no reader learns from what the worker refused.

>>> from velox.schemas.observation import Observation
>>> implicit = Feedback(implicit=True, confidences={"click": 4.0, "dismiss": -2.0})
>>> implicit.target(Observation(user=1, item=2, time=0.0, kind="dismiss"))
(0.0, 2.0)
>>> Feedback().target(Observation(user=1, item=2, time=0.0, score=4.0, kind="click"))
(4.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from velox.errors import InvalidObservation
from velox.schemas.observation import Observation


@dataclass(frozen=True)
class Feedback:
    implicit: bool = False
    confidences: Mapping[str, float] = field(default_factory=dict)  # kind → confidence; negative: a negative kind

    def target(self, seen: Observation) -> tuple[float, float]:
        """What the event teaches: its score with confidence 1 (explicit), or its preference and
        its kind's confidence (implicit); InvalidObservation if it cannot teach this system."""
        if not self.implicit:
            if seen.score is None:
                raise InvalidObservation("score", f"this system learns from scores (explicit feedback); the event "
                                                  f"has only a kind ({seen.kind!r})")
            return seen.score, 1.0
        if seen.kind is None:
            raise InvalidObservation("kind", "this system learns from kinds (implicit feedback); the event has "
                                             "only a score")
        confidence = self.confidences.get(seen.kind)
        if confidence is None:
            raise InvalidObservation("kind", f"unknown kind {seen.kind!r}: this system knows "
                                             f"{', '.join(sorted(self.confidences))} (VELOX_CONFIDENCE)")
        return (1.0 if confidence > 0 else 0.0), abs(confidence)


EXPLICIT = Feedback()
