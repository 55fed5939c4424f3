"""The edge's JSON answers as types, for the Python client (``velox.client``).

Unknown fields are ignored, so an edge that adds a field does not break an older client.
"""

from __future__ import annotations

import msgspec

Id = int | str  # an id as it was given (velox.schemas.ids): an integer id as an int


class Prediction(msgspec.Struct, frozen=True):
    user: Id
    item: Id
    score: float
    version: str
    known_user: bool
    known_item: bool
    default: bool = False  # True: the active version's batch answer (the user's owner did not answer in time)
    features: str | None = None  # the item's: "trained", "content" (mapped from its attributes) or "none"


class Scored(msgspec.Struct, frozen=True):
    item: Id
    score: float


class TopK(msgspec.Struct, frozen=True):
    user: Id
    version: str
    known_user: bool
    items: list[Scored]
    default: bool = False


class ItemAttributes(msgspec.Struct, frozen=True):
    """An item's attributes (``velox.schemas.item_attributes``): written, or as an edge holds them."""

    item: Id
    attributes: dict[str, str | list[str] | float]


class Accepted(msgspec.Struct, frozen=True):
    """An observation the broker acknowledged: where it is in ``observations``."""

    status: str
    partition: int
    offset: int


class AppPrediction(msgspec.Struct, frozen=True):
    app: str
    user: Id
    item: Id
    score: float
    default: bool = False  # True: the app's default output (no model could answer in time)
    model: str | None = None  # the model the app's policy chose
    version: str | None = None
    decision: str | None = None  # the id feedback on this answer rewards


class Version(msgspec.Struct, frozen=True):
    id: str
    created_at: float
    d: int
    active: bool
    training_rows: int = 0
    holdout_rows: int = 0
    validation_rmse: float | None = None


class Versions(msgspec.Struct, frozen=True):
    active: str
    versions: list[Version]


class Activated(msgspec.Struct, frozen=True):
    active: str
    activated_at: float


class Problem(msgspec.Struct, frozen=True):
    """What the edge answers with a 4xx or 5xx status."""

    error: int
    detail: str
