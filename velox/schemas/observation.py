"""The observation event: user ``user`` gave item ``item`` the score ``score``, or an interaction
of kind ``kind`` ("view", "click", "purchase", ...), at ``time``.

An event carries a score, a kind or both: an explicit system learns from the score, an implicit one
from the kind (``velox.model.feedback``); what the system needs and the event lacks makes it a dead
letter there, not here.

On the ``observations`` topic the value is this event as JSON and the key is the user id's UTF-8
bytes (``velox.schemas.ids``: an integer id's decimal digits), or no key: the user in the value
decides. An event counts in its user's home
partition (``partitioning.home``); one that a producer put elsewhere is moved there by the
worker, and only that copy counts. ``observation.schema.json`` beside this file is the same
contract for other languages; a test keeps the two equal.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Annotated

import msgspec

from velox.errors import InvalidObservation
from velox.schemas import ids, partitioning
from velox.schemas.ids import Id

Context = dict[str, str | int | float | bool]
MAX_KIND = 32  # characters of a kind


Kind = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_KIND, pattern="^[a-z0-9_-]+$",
                                    description="An interaction's kind: lowercase letters, digits, _ and -.")]


class Observation(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One piece of feedback: a ``score``, a ``kind`` or both. ``time`` is the event time in seconds
    since the Unix epoch."""

    user: Id
    item: Id
    time: Annotated[float, msgspec.Meta(ge=0)]
    score: float | None = None
    kind: Kind | None = None
    context: Context | None = None

    def __post_init__(self) -> None:
        if self.score is None and self.kind is None:
            raise ValueError("score: an event has a score, a kind or both")
        # JSON cannot carry NaN or infinity, but Python callers can.
        if self.score is not None and not math.isfinite(self.score):
            raise ValueError("score: must be a finite number")
        for field, value in (("user", self.user), ("item", self.item)):
            if (why := ids.problem(value)) is not None:  # (what the type cannot say: bytes, not characters)
                raise ValueError(f"{field}: {why}")

    @property
    def key(self) -> bytes:
        return ids.key(self.user)

    @property
    def user_code(self) -> int:
        return ids.code(self.user)

    @property
    def item_code(self) -> int:
        return ids.code(self.item)


_decoder = msgspec.json.Decoder(Observation)
_encoder = msgspec.json.Encoder()
_FIELD_AT = re.compile(r"at `\$\.(\w+)")
_FIELD_MISSING = re.compile(r"field `(\w+)`")
_FIELD_SAID = re.compile(r"^(\w+): ")


def decode(data: bytes) -> Observation:
    """Decode and validate one event; any problem raises InvalidObservation naming the field."""
    try:
        return _decoder.decode(data)
    except msgspec.ValidationError as exc:
        message = str(exc)
        found = _FIELD_AT.search(message) or _FIELD_MISSING.search(message) or _FIELD_SAID.search(message)
        field = found.group(1) if found else ""
        reason = _FIELD_SAID.sub("", message.split(" - at `")[0])
        if "Number out of range" in reason:
            reason = "number out of range (must be finite)"
        elif field in ("user", "item") and reason.startswith("Expected `str`"):
            reason = ids.problem(msgspec.json.decode(data)[field]) or reason  # said as the id's rule
        raise InvalidObservation(field, reason) from None
    except msgspec.DecodeError as exc:
        if "UTF-8" in str(exc):
            raise InvalidObservation(_not_utf8(data), "an id is valid UTF-8 (the event's text is not)") from None
        raise InvalidObservation("", f"not a JSON observation: {exc}") from None


def _not_utf8(data: bytes) -> str:
    """The field of an event whose text is not valid UTF-8 (its bytes kept as surrogates)."""
    try:
        fields = json.loads(data.decode("utf-8", "surrogateescape"))
    except ValueError:
        return ""
    bad = [name for name, value in fields.items() if isinstance(value, str) and not value.isprintable()
           and any("\udc80" <= c <= "\udcff" for c in value)] if isinstance(fields, dict) else []
    return bad[0] if bad else ""


def from_message(key: bytes | None, value: bytes | None) -> Observation:
    """The event a message of ``observations`` carries, or InvalidObservation.

    A key must be the user id: one naming another user is ambiguous (whose partition is it?).
    A message without a key (a round-robin producer) belongs to the user in its value.
    """
    if value is None:
        raise InvalidObservation("", "empty message (no value)")
    seen = decode(value)
    if key is not None and key != seen.key:
        raise InvalidObservation("user", f"message key {key!r} is not the user id {seen.user!r} (its UTF-8 bytes)")
    return seen


def counted(key: bytes | None, value: bytes | None, partition: int, partitions: int,
            teaches: Callable[[Observation], object] | None = None) -> Observation | None:
    """The event if it counts where it is: valid (``teaches`` it without raising InvalidObservation;
    by default, it has a score) and in its user's home partition; else None.

    Every reader of ``observations`` but the worker (replays, the retrain job, rewards) reads it
    this way: a dead letter counts nowhere, and an event outside its home partition counts as the
    copy the worker moved home. ``teaches`` is the system's ``Feedback.target``
    (``velox.schemas.feedback``); a reader of ratings need not say it.
    """
    try:
        seen = from_message(key, value)
        if teaches is None:
            if seen.score is None:
                return None
        else:
            teaches(seen)
    except InvalidObservation:
        return None
    return seen if partitioning.home(seen.key, partitions) == partition else None


def encode(observation: Observation) -> bytes:
    return _encoder.encode(observation)


def json_schema() -> dict[str, object]:
    """The JSON Schema this module implements (what ``observation.schema.json`` holds)."""
    return msgspec.json.schema(Observation)
