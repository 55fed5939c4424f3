"""Observations applied to users' states: predict first (prequential error), then learn.

The worker, the swap's replay and every reference replay in the tests go through
``Learner.observe_many``, so "the same state as a sequential replay" is a statement about this
one function. It takes a batch of events in order and applies them as rounds: round r holds the
r-th event of each user in the batch, so one vectorized step of the rule updates every user of
a round, and each user's events are still applied one after the other, in order. A batch of one
event is the sequential case (``observe``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple, Protocol

import numpy as np

from velox.errors import ConfigError
from velox.model.implicit import Implicit
from velox.model.rls import RLS
from velox.model.sgd import SGD
from velox.model.stats import Stats
from velox.model.version import ModelVersion
from velox.schemas.feedback import Feedback
from velox.schemas.observation import Observation
from velox.schemas.user_state import UserState

PASS_BYTES = 4 * 2**20  # users' state arrays updated in one vectorized pass (see observe_many)


class UpdateRule(Protocol):
    name: str

    def start(self, version: str, prior: np.ndarray, trained: int) -> UserState: ...

    def resume(self, state: UserState, features: Callable[[Sequence[int]], np.ndarray]) -> UserState: ...

    def update(self, stats: Stats, f: np.ndarray, targets: np.ndarray, priors: np.ndarray,
               evidence: np.ndarray) -> Stats: ...


def make_rule(name: str, learning_rate: float | None = None, l2: float | None = None,
              evidence: float | None = None, forgetting: float | None = None) -> UpdateRule:
    """The rule called ``name``; a parameter left None keeps the rule's own default (rls has no
    rate, sgd no forgetting factor: a step that never reaches zero forgets already; implicit has
    only λ)."""
    given = {key: value for key, value in (("l2", l2), ("evidence", evidence)) if value is not None}
    if name == "sgd":
        return SGD(**given) if learning_rate is None else SGD(learning_rate=learning_rate, **given)
    if name == "rls":
        return RLS(**given) if forgetting is None else RLS(forgetting=forgetting, **given)
    if name == "implicit":
        return Implicit(l2=l2) if l2 is not None else Implicit()
    raise ConfigError(f"update rule {name!r} is unknown; use 'sgd', 'rls' or 'implicit'")


class Event(NamedTuple):
    """One observation for the learner: whose state (``key``), and its source ``offset``. ``user``
    and ``item`` are the ids' codes (``velox.schemas.ids``): the version's rows are looked up by them.
    ``score`` is the rating, or an interaction's preference with its ``confidence``
    (``velox.schemas.feedback``)."""

    key: bytes
    user: int
    item: int
    score: float
    offset: int
    confidence: float = 1.0


def event_of(seen: Observation, offset: int, feedback: Feedback) -> Event:
    """The learner's event of an observation; InvalidObservation if it cannot teach this system."""
    target, confidence = feedback.target(seen)
    return Event(seen.key, seen.user_code, seen.item_code, target, offset, confidence)


@dataclass(frozen=True)
class Learner:
    version: ModelVersion
    rule: UpdateRule
    keeps_seen: bool = True  # a swap's replay keeps none: its records take the stored record's
    keep_known: bool = False  # users the version knows keep its vector (``velox evaluate`` found no safe step)

    weighted: bool = field(init=False)  # the rule weighs each observation by its confidence (implicit feedback)

    def __post_init__(self) -> None:
        object.__setattr__(self, "weighted", isinstance(self.rule, Implicit))
        if self.weighted:  # its prior is the version's Gramian
            object.__setattr__(self, "rule", self.rule.given(self.version))

    def observe(
        self, state: UserState | None, user: int, item: int, score: float, offset: int, confidence: float = 1.0
    ) -> tuple[UserState, float | None]:
        """The user's new state and the score predicted before learning (None: applied already).

        ``observe_many`` with one event, without its bookkeeping, which replays that go one event
        at a time would pay per event; the tests hold the two paths equal.
        """
        if state is not None and offset <= state.offset:
            return self._seen(state, [item]), None
        prior = self.version.prior(user)
        state = self._current(state, user)
        f, bias = self.version.features_many([item])
        base = self.version.global_mean + float(bias[0])
        prediction = base + float(state.w @ f[0])
        new = Stats.of(state, features=self._features, room=1)
        moves = self._moves(user)
        if moves:
            new = self._update(new, f, np.array([score]) - base, prior[None].astype(np.float64),
                               np.array([state.count]), np.array([confidence]),
                               np.array([not self._interacted(state, user, item)]))
        seen = self._remembered(state.seen, [item])
        return new.state(0, state, 1, offset, seen, [item] if moves else (), [confidence] if moves else ()), prediction

    def _interacted(self, state: UserState, user: int, item: int) -> bool:
        """Whether a user interacted with ``item`` before ``state``'s next event: seen, or in the
        version's training interactions (an implicit version keeps them). Searched in the arrays,
        not made a set: a heavy user's history would be copied for each batch of theirs."""
        if item in (state.seen.tolist() if len(state.seen) <= 64 else state.seen):  # a short list: no array made
            return True
        trained = self.version.trained_interactions(user)
        return trained is not None and item in trained[0]

    def _update(self, stats: Stats, f: np.ndarray, targets: np.ndarray, priors: np.ndarray, evidence: np.ndarray,
                confidence: np.ndarray, first: np.ndarray) -> Stats:
        """The rule's update; an implicit one's with each interaction's confidence, and its target
        such that c t = p (c + 1) on the user's first interaction with the item (``velox.model.implicit``)."""
        if not self.weighted:
            return self.rule.update(stats, f, targets, priors, evidence)
        return self.rule.update(stats, f, targets * (1.0 + first / confidence), priors,  # type: ignore[call-arg]
                                evidence, confidence)

    def observe_many(
        self, states: Mapping[bytes, UserState | None], events: Sequence[Event]
    ) -> tuple[dict[bytes, UserState], list[float | None]]:
        """The new state of every key in ``events``, and per event the score predicted before learning.

        ``states`` holds each key's stored state (None or absent: none yet). An event at or below
        its key's last applied source offset (stored, or earlier in ``events``) was applied
        already: its prediction is None and it changes nothing but the seen items (this is what
        makes replay exactly-once, also of events delivered twice in one batch). Its item is
        remembered: a swap writes a user on a version whose training end is past the live
        position, and the events up to that end come later, counted by the version already,
        still items the user rated.

        Users whose state holds RLS's matrix are taken apart, in passes of ``PASS_BYTES`` of
        state (all of a key's events in its pass): a pass's arrays stay in the CPU's cache, where
        a whole batch's matrices at once (tens of megabytes at d=50) were allocated, faulted in
        and copied at memory speed (``bench/stream.py``'s rls row measures the rate). The others
        (small states) are one pass.
        """
        starts: dict[bytes, tuple[UserState, np.ndarray]] = {}  # key → its state on this version, its prior
        for event in events:
            if event.key not in starts:
                prior = self.version.prior(event.user)
                starts[event.key] = self._current(states.get(event.key), event.user), prior
        dense = {key for key, (start, _) in starts.items() if start.a_inv is not None}
        if not dense:
            return self._observe(states, starts, events)
        passes = _passes(events, dense, max(1, PASS_BYTES // self._matrix_bytes))
        result: dict[bytes, UserState] = {}
        predictions: list[float | None] = [None] * len(events)
        for indices in passes:
            new, predicted = self._observe(states, starts, [events[i] for i in indices])
            result.update(new)
            for index, prediction in zip(indices, predicted):
                predictions[index] = prediction
        return result, predictions

    @cached_property
    def _matrix_bytes(self) -> int:
        """The bytes of one user's arrays when the state holds RLS's matrix."""
        return 8 * self.version.d ** 2 + 12 * self.version.d

    def _features(self, items: Sequence[int]) -> np.ndarray:
        return self.version.features_many(items)[0]

    def _observe(
        self, states: Mapping[bytes, UserState | None], current: Mapping[bytes, tuple[UserState, np.ndarray]],
        events: Sequence[Event],
    ) -> tuple[dict[bytes, UserState], list[float | None]]:
        keys: dict[bytes, int] = {}  # key → row
        starts: list[UserState] = []
        priors: list[np.ndarray] = []
        rows, rounds, applied = [], [], []  # per event to apply: its row, its round, its index
        depth: list[int] = []
        moves: list[bool] = []
        done: list[int] = []  # per row, the last offset applied so far
        rated: list[list[int]] = []  # per row, the items of its events, applied or not, in order
        batch_items: list[set[int]] = []  # per row (implicit rule), the items of its events applied so far
        first: list[bool] = []  # per event to apply (implicit rule): the user's first with its item
        for index, event in enumerate(events):
            row = keys.get(event.key)
            if row is None:
                row = keys[event.key] = len(starts)
                start, prior = current[event.key]
                starts.append(start)
                priors.append(prior)
                depth.append(0)
                moves.append(self._moves(event.user))
                done.append(starts[-1].offset)
                rated.append([])
                if self.weighted:
                    batch_items.append(set())
            rated[row].append(event.item)
            if event.offset <= done[row]:  # applied before, or earlier in this batch (delivered again)
                continue
            if self.weighted:
                first.append(event.item not in batch_items[row]
                             and not self._interacted(starts[row], event.user, event.item))
                batch_items[row].add(event.item)
            done[row] = event.offset
            rows.append(row)
            rounds.append(depth[row])
            applied.append(index)
            depth[row] += 1
        predictions: list[float | None] = [None] * len(events)
        if not applied:
            return {key: self._seen(states[key], rated[row])  # type: ignore[arg-type]
                    for key, row in keys.items()}, predictions

        stats = Stats.of(*starts, features=self._features, room=max(depth))
        prior = np.stack(priors).astype(np.float64)
        f, bias = self.version.features_many([events[i].item for i in applied])
        base = self.version.global_mean + bias
        targets = np.array([events[i].score for i in applied]) - base
        confidence = np.array([events[i].confidence for i in applied])
        firsts = np.array(first, bool) if self.weighted else np.zeros(len(applied), bool)
        rows_, rounds_ = np.array(rows), np.array(rounds)
        counts, moving = np.array([start.count for start in starts]), np.array(moves)
        scores = np.empty(len(applied))
        for r in range(int(rounds_.max()) + 1):
            at = np.flatnonzero(rounds_ == r)  # this round's events: one per user, distinct rows
            scores[at] = base[at] + np.einsum("ij,ij->i", stats.w[rows_[at]].astype(np.float64), f[at])
            at = at[moving[rows_[at]]]
            here = rows_[at]
            if len(here) == len(starts) and (here == np.arange(len(here))).all():  # every row, in order: no copy
                stats = self._update(stats, f[at], targets[at], prior, counts + r, confidence[at], firsts[at])
            elif len(at):
                stats.put(here, self._update(stats.take(here), f[at], targets[at], prior[here], counts[here] + r,
                                             confidence[at], firsts[at]))
        for k, index in enumerate(applied):
            predictions[index] = float(scores[k])

        last = {row: index for row, index in zip(rows, applied)}
        items: list[list[int]] = [[] for _ in starts]
        weights: list[list[float]] = [[] for _ in starts]
        for row, index in zip(rows, applied):
            items[row].append(events[index].item)
            weights[row].append(events[index].confidence)
        result: dict[bytes, UserState] = {}
        for key, row in keys.items():
            start = starts[row]
            if row not in last:  # every event of the key was applied already
                result[key] = self._seen(states[key], rated[row])  # type: ignore[arg-type]
                continue
            seen = self._remembered(start.seen, rated[row])
            result[key] = stats.state(row, start, depth[row], events[last[row]].offset, seen,
                                      items[row] if moves[row] else (), weights[row] if moves[row] else ())
        return result, predictions

    def _seen(self, state: UserState, items: list[int]) -> UserState:
        """``state`` with ``items`` among its seen ones (itself if none is new, or seen is not kept)."""
        seen = self._remembered(state.seen, items)
        return state if seen is state.seen else state._replace(seen=seen)

    def _remembered(self, seen: np.ndarray, items: Sequence[int]) -> np.ndarray:
        """An implicit rule's replay keeps them too: which interaction is a user's first with an item
        is said by them."""
        return remember(seen, items) if self.keeps_seen or self.weighted else seen

    def _current(self, state: UserState | None, user: int) -> UserState:
        """The user's state on this version, in the form the rule updates next: started from the
        prior if new, or if built on another (counting the user's training observations, as a
        swap does)."""
        if state is None or state.version != self.version.id:
            start = self.start(user)
            return start if state is None else start._replace(offset=state.offset, seen=state.seen)
        return self.rule.resume(state, self._features)

    def start(self, user: int, row: int | None = None) -> UserState:
        """The user's state on this version before any event of theirs (a swap writes it for every
        user the version knows, giving the ``row`` it knows already): from their trained vector and
        training count, or the mean user; on an implicit version that keeps them, from their
        training interactions too."""
        version = self.version
        row = version.users.row(user) if row is None else row
        prior = version.mean_user if row < 0 else version.user_vectors[row]
        trained = 0 if row < 0 else int(version.user_counts[row])
        if self.weighted:
            return self.rule.start(version.id, prior, trained,  # type: ignore[call-arg]
                                   version.trained_interactions(user))
        return self.rule.start(version.id, prior, trained)

    def _moves(self, user: int) -> bool:
        return not (self.keep_known and self.version.knows_user(user))


def _passes(events: Sequence[Event], apart: Set[bytes], users: int) -> list[list[int]]:
    """The indices of ``events``: the keys ``apart`` in passes of at most ``users`` keys each,
    the others in one pass; every key's events in one pass, in order."""
    pass_of: dict[bytes, int] = {}
    passes: list[list[int]] = [[]]  # the first: the keys not apart
    taken = users  # keys in the last pass of keys apart
    for index, event in enumerate(events):
        at = pass_of.get(event.key)
        if at is None:
            at = 0
            if event.key in apart:
                if taken == users:
                    passes.append([])
                    taken = 0
                at, taken = len(passes) - 1, taken + 1
            pass_of[event.key] = at
        passes[at].append(index)
    return [indices for indices in passes if indices]


def remember(seen: np.ndarray, items: Sequence[int]) -> np.ndarray:
    """The user's seen items with ``items`` added in order (each once): every item they rated or
    interacted with, for top-k's ``exclude_seen`` (a heavy user keeps every purchase out of their
    top-k, not only the recent ones), 8 bytes of their record each.

    >>> remember(np.array([3, 5]), [5]).tolist(), remember(np.array([3, 5]), [8, 3, 9]).tolist()
    ([3, 5], [3, 5, 8, 9])
    """
    if len(items) == 1 and len(seen) <= 64:  # the usual case: no set or array is built for it
        if items[0] in seen.tolist():
            return seen
        grown = np.empty(len(seen) + 1, np.int64)
        grown[:-1], grown[-1] = seen, items[0]
        return grown
    # A set of a short list is cheaper than a numpy scan per item; a long list is scanned.
    known = set(seen.tolist()) if len(seen) <= 64 else None
    new = [item for item in dict.fromkeys(items)
           if (item not in known if known is not None else not (seen == item).any())]
    if not new:
        return seen
    return np.concatenate([seen, np.array(new, np.int64)])
