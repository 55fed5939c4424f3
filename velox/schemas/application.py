"""Applications (Clipper's word): the records of the ``apps``, ``decisions`` and ``policy-state`` topics.

An app links several models and picks one per request by its policy. ``apps`` is compacted,
keyed by app name (the last record is the app); every choice is logged on ``decisions`` with its
propensity; ``policy-state`` (compacted, keyed by app and edge) keeps what each edge's policies
learned and how far into ``observations`` they read, so a restarted edge goes on from there.
"""

from __future__ import annotations

from typing import Any

import msgspec

from velox.schemas import records
from velox.schemas.ids import Id


class App(msgspec.Struct, frozen=True):
    name: str
    default_output: float  # the score answered when no linked model can answer in time
    slo_ms: float = 100.0
    models: list[str] = []
    policy: str = "fixed"  # fixed, ab, epsilon, exp3, thompson (velox.model.policies)
    weights: list[float] = []  # ab: the split, in the order of ``models``
    epsilon: float = 0.1
    gamma: float = 0.1
    per_user: bool = False  # one policy state per user instead of one for the app
    sticky_s: float = 0.0  # a user keeps the model chosen for them for this long


class PredictRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The body of ``POST /v1/apps/{app}/predict``: what ``GET`` asks, with the request's context features."""

    user: Id
    item: Id
    context: dict[str, Any] = {}


ORIGIN_HEADER = "velox-origin"  # a decision's header: the edge process that made it (``Selector.owner``)


class Decision(msgspec.Struct, frozen=True):
    id: str
    app: str
    user: Id
    model: str
    propensity: float
    policy: str
    at: float
    sticky: bool  # the user's earlier choice, reused within the app's sticky window
    predictions: dict[str, float]  # item id (as text) → score answered, which the user's next rating rewards


class ArmState(msgspec.Struct, frozen=True):
    names: list[str]
    pulls: list[float]
    rewards: list[float]
    log_weights: list[float]
    alpha: list[float]
    beta: list[float]


class PolicyState(msgspec.Struct, frozen=True):
    app: str
    arms: dict[str, ArmState]  # by scope: "*" for the app, or a user id
    offsets: dict[int, int]  # the next offset of each ``observations`` partition to read
    sticky: dict[str, tuple[str, float, float]] = {}  # user → (model, propensity, chosen at)


encode = records.encode
decode_app = records.decoder(App)
decode_decision = records.decoder(Decision)
decode_state = records.decoder(PolicyState)
decode_predict = records.decoder(PredictRequest)
