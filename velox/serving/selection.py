"""Choosing a model per request for an application, and learning from the feedback that follows.

Each decision is logged on ``decisions`` with its propensity and the scores it answered. A
background thread reads ``observations``; a rating of an item that a decision for that user
answered rewards the chosen model by the error of its score, an interaction with it by the
interaction itself (``velox.serving.rewards``; ``velox.model.policies``). Every
few seconds the policies' state, the sticky choices and the offsets read so far go to the
compacted ``policy-state`` topic, keyed by app and worker, so a restarted edge goes on from
there. Requests for a user are answered at the edge of the user's owner (forwarded there), so
one edge makes and learns from all of a user's decisions. An edge of several processes (``velox
serve --processes``) spreads a user's requests across them: each process also reads the
decisions the others make (``decisions``, by their origin header), so that every process keeps
the same sticky choices and learns from every rating of every decision.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

import msgspec
import numpy as np
from confluent_kafka import Message, Producer, TopicPartition
from prometheus_client import Counter

from velox.control import app_registry, compacted
from velox.errors import InvalidObservation
from velox.kafka import clients, positions
from velox.model.policies import Arms, Policy, choose, learn, probabilities
from velox.schemas import application as app_schema
from velox.schemas import observation
from velox.schemas.application import App, ArmState, Decision, PolicyState
from velox.schemas.feedback import Feedback
from velox.serving.rewards import PendingDecisions
from velox.settings import Settings

log = logging.getLogger("velox.selection")

DECISIONS = Counter("velox_edge_app_decisions", "Apps' decisions made at this edge, by app and model chosen.",
                    ["app", "model"])
SNAPSHOT_INTERVAL = 2.0
# On an implicit system, a decision no interaction follows within this long earns 0.
UNANSWERED_AFTER_S = 300.0


def policy_of(app: App) -> Policy:
    return Policy(app.policy, tuple(app.weights), app.epsilon, app.gamma)


class Selector:
    """``slot``: which of the edge's processes this is; each keeps its own state on ``policy-state``."""

    def __init__(self, settings: Settings, producer: Producer, slot: int = 0) -> None:
        self.settings, self.producer = settings, producer
        self.owner = settings.worker_id if slot == 0 else f"{settings.worker_id}/{slot}"
        self.decisions = settings.topic("decisions")
        self.siblings = settings.edge_process_count() > 1  # other processes of this edge decide too
        self.apps = app_registry.follow(settings)
        self.rng = np.random.default_rng(settings.seed)
        self.lock = threading.Lock()
        self.writing = threading.Lock()  # one snapshot at a time
        self.arms: dict[tuple[str, str], Arms] = {}  # (app, scope) → what its policy learned
        self.sticky: dict[tuple[str, str], tuple[str, float, float]] = {}  # (app, user) → model, propensity, at
        self.feedback = Feedback(settings.implicit, settings.confidences)
        self.pending = PendingDecisions(settings.implicit, UNANSWERED_AFTER_S)
        self.source = settings.topic("observations")
        self.offsets = self._restore()
        self.dirty = False  # something to snapshot: offsets read on, or a sticky choice made
        self.reader = clients.consumer(settings, group=f"{settings.app_id}-selection-{uuid.uuid4().hex[:8]}")
        ends = positions.end_offsets(settings, self.source)
        self.reader.assign([TopicPartition(self.source, p, self.offsets.get(p, end)) for p, end in ends.items()] + (
            [TopicPartition(self.decisions, p, end) for p, end in positions.end_offsets(settings, self.decisions).items()]
            if self.siblings else []))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._learn_loop, name="velox-selection", daemon=True)
        self._thread.start()

    def app(self, name: str) -> App | None:
        return self.apps.rows.get(name)

    def decide(self, app: App, user: int | str) -> tuple[str, float, bool]:
        """The model for this request, its propensity, and whether it is the user's sticky choice."""
        now = time.time()
        with self.lock:
            kept = self.sticky.get((app.name, str(user)))
            if kept is not None and kept[0] in app.models and now - kept[2] < app.sticky_s:
                return kept[0], kept[1], True
            arm, propensity = choose(policy_of(app), self._arms(app, user), self.rng)
            model = app.models[arm]
            if app.sticky_s > 0:
                self.sticky[(app.name, str(user))] = (model, propensity, now)
                self.dirty = True
        return model, propensity, False

    def record(self, app: App, user: int | str, model: str, propensity: float, sticky: bool,
               predictions: dict[int | str, float]) -> Decision:
        """Log the decision and keep it for the user's next rating (ids by their text: ``42`` and
        ``"42"`` are one id)."""
        decision = Decision(uuid.uuid4().hex[:16], app.name, user, model, propensity, app.policy, time.time(),
                            sticky, {str(item): score for item, score in predictions.items()})
        self._unanswered(self.pending.keep(decision))
        self.producer.produce(self.decisions, key=app.name.encode(), value=app_schema.encode(decision),
                              headers={app_schema.ORIGIN_HEADER: self.owner})
        DECISIONS.labels(app=app.name, model=model).inc()
        return decision

    def probabilities(self, app: App) -> dict[str, float]:
        """The app-wide choice probabilities (for a per-user app: a new user's)."""
        with self.lock:
            arms = Arms.start(app.models) if app.per_user else self._arms(app, None)
            p = probabilities(policy_of(app), arms, self.rng)
        return dict(zip(app.models, p.tolist()))

    def _arms(self, app: App, user: int | str | None) -> Arms:
        scope = (app.name, str(user) if app.per_user and user is not None else "*")
        arms = self.arms.get(scope)
        if arms is None or arms.names != app.models:  # new, or the app's links changed: start again
            arms = self.arms[scope] = Arms.start(app.models)
        return arms

    def _learn_loop(self) -> None:
        last_snapshot = time.monotonic()
        while not self._stop.is_set():
            for message in clients.arrived(self.reader, 500, 0.1):
                if message.error() is None and message.topic() == self.decisions:
                    self._sibling_decision(message)
                elif message.error() is None:
                    try:
                        self._reward(message)
                    except Exception:  # one bad record must not stop every app from learning
                        log.exception("reward from %s[%d]@%d failed", message.topic(), message.partition(),
                                      message.offset())
                    self.offsets[message.partition()] = message.offset() + 1
                    self.dirty = True
            if time.monotonic() - last_snapshot >= SNAPSHOT_INTERVAL:
                self._unanswered(self.pending.expired(time.time()))
                self.snapshot()
                last_snapshot = time.monotonic()

    def _sibling_decision(self, message: Message) -> None:
        """A decision another process of this edge made: kept for the user's rating, and as their
        sticky choice if it was a new one."""
        origin = dict(message.headers() or ()).get(app_schema.ORIGIN_HEADER, b"").decode()
        if origin == self.owner or origin.split("/")[0] != self.settings.worker_id:
            return
        try:
            decision = app_schema.decode_decision(message.value())
        except msgspec.DecodeError:
            log.warning("a decision at %s[%d]@%d is not one: skipped", message.topic(), message.partition(),
                        message.offset())
            return
        self._unanswered(self.pending.keep(decision))
        app = self.apps.rows.get(decision.app)
        if app is not None and app.sticky_s > 0 and not decision.sticky:
            with self.lock:
                self.sticky[(decision.app, str(decision.user))] = (decision.model, decision.propensity, decision.at)
                self.dirty = True

    def _reward(self, message: Message) -> None:
        seen = observation.counted(message.key(), message.value(), message.partition(), self.settings.partitions)
        if seen is None:
            return
        try:
            target, _ = self.feedback.target(seen)  # a rating, or an interaction's preference
        except InvalidObservation:  # not feedback this system learns from (a dead letter for the worker)
            return
        for name in list(self.apps.rows):
            for decision, reward in self.pending.rewards(name, seen.user, str(seen.item), target):
                self._learn(decision, reward)

    def _unanswered(self, decisions: list[Decision]) -> None:
        for decision in decisions:
            self._learn(decision, 0.0)

    def _learn(self, decision: Decision, reward: float) -> None:
        app = self.apps.rows.get(decision.app)
        if app is None or decision.model not in app.models:
            return
        with self.lock:
            learn(policy_of(app), self._arms(app, decision.user), app.models.index(decision.model),
                  decision.propensity, reward)

    def snapshot(self) -> None:
        """Write each app's learned state and the offsets read to ``policy-state``, if anything changed.

        One at a time: when it returns, whatever changed before the call is acknowledged."""
        with self.writing:
            if not self.dirty:
                return
            self.dirty = False  # before copying: a change made meanwhile goes in the next snapshot
            with self.lock:
                states: dict[str, dict[str, ArmState]] = {}
                for (app, scope), arms in self.arms.items():
                    states.setdefault(app, {})[scope] = ArmState(
                        arms.names, arms.pulls.tolist(), arms.rewards.tolist(), arms.log_weights.tolist(),
                        arms.alpha.tolist(), arms.beta.tolist())
                sticky = dict(self.sticky)
            for app, arms in states.items():
                record = PolicyState(app, arms, dict(self.offsets),
                                     {user: kept for (name, user), kept in sticky.items() if name == app})
                self.producer.produce(self.settings.topic("policy-state"), key=self._key(app),
                                      value=app_schema.encode(record))
            self.producer.flush(10)

    def _key(self, app: str) -> bytes:
        return f"{app}@{self.owner}".encode()

    def _restore(self) -> dict[int, int]:
        """This edge's policy states as last written; the offsets to read on from."""
        saved_states = compacted.read_table(self.settings, self.settings.topic("policy-state"), app_schema.decode_state)
        offsets: dict[int, int] = {}
        for key, state in saved_states.items():
            if not key.endswith(f"@{self.owner}"):
                continue
            for scope, saved in state.arms.items():
                self.arms[(state.app, scope)] = Arms(
                    list(saved.names), np.array(saved.pulls), np.array(saved.rewards), np.array(saved.log_weights),
                    np.array(saved.alpha), np.array(saved.beta))
            self.sticky.update({(state.app, user): kept for user, kept in state.sticky.items()})
            # Snapshots of different apps may be a moment apart: read on from the earliest.
            offsets = {p: min(offsets.get(p, o), o) for p, o in state.offsets.items()}
        if offsets:
            log.info("policy state restored for %d scopes; reading observations from %s", len(self.arms), offsets)
        return offsets

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.snapshot()
        self.reader.close()
        self.apps.close()
