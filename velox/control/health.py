"""The system's health as an operator asks for it: one report read from the topics, with what is wrong.

``velox status`` prints it (or its JSON). Everything in it is read from Kafka: the cluster's
metadata, the worker group's committed offsets and members, ``owners``, ``model-versions`` and
the model store, ``model-pins``, ``model-metrics``, ``retrain-controller`` (the controller's own
word on its triggers), ``apps`` and ``decisions``, ``containers``;
each edge beside a worker is asked whether it answers. Nothing is created or written: a report on
a cluster that has no system says so.

Unhealthy (``problems``): the broker unreachable, a partition without an owner (no claim, or the
claimant no longer in the worker group: killed, its session over), a partition whose lag grew
while the group committed nothing of it, a replica out of sync, a container without a live replica.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import msgspec
from confluent_kafka import TopicPartition

from velox.control import compacted, container_registry
from velox.kafka import clients, groups, positions
from velox.model.prequential import window_rmse
from velox.model.store import ModelStore
from velox.schemas import (
    application,
    container_rpc,
    controller_report,
    error_window,
    model_version,
    ownership,
)
from velox.schemas.controller_report import ControllerReport
from velox.schemas.error_window import ErrorWindow
from velox.settings import Settings

T = TypeVar("T")
RECENT_DECISIONS = 10_000  # the share of each model is over an app's last decisions, at most these
RECENT_METRICS = 100_000  # error windows read since the activation, at most (8 partitions: 17 hours)
DRIFT_WINDOW = 60.0  # seconds of online error the drift line reads (the controller's default --window)


class Broker(msgspec.Struct):
    id: int
    address: str


class TopicState(msgspec.Struct):
    name: str
    partitions: int
    replicas: int
    in_sync: int  # the fewest in-sync replicas of any of its partitions
    short: list[int]  # partitions with fewer replicas in sync than assigned


class PartitionState(msgspec.Struct):
    partition: int
    owner: str | None
    edge: str | None
    applied: int  # the worker group's committed offset: observations applied up to there
    end: int
    lag: int
    stalled: bool  # the lag grew while the group committed nothing of this partition


class WorkerState(msgspec.Struct):
    worker: str
    edge: str
    partitions: list[int]
    in_group: bool | None  # None: the group could not be described
    edge_answers: bool


class ModelState(msgspec.Struct):
    name: str
    version: str
    activated_at: float
    activated_because: str
    trained_at: float
    training_rows: int
    validation_rmse: float | None
    online_rmse: float | None  # since the activation, on this version's own windows
    online_count: int
    pinned: model_version.Pin | None


class RetrainState(msgspec.Struct):
    version: str  # the newest version in the store
    trained_at: float
    trigger: str
    active: bool


class DriftState(msgspec.Struct):
    online_rmse: float | None  # over the last DRIFT_WINDOW seconds, since the activation
    validation_rmse: float | None
    ratio: float | None  # online over validation: the controller's --drift tolerance is compared with ratio - 1
    held_by_pin: bool


class AppState(msgspec.Struct):
    name: str
    policy: str
    models: list[str]
    decisions: int  # the recent decisions the shares are of
    shares: dict[str, float]


class ContainerState(msgspec.Struct):
    name: str
    serving: str | None
    replicas: list[str]  # live replicas' addresses


class Report(msgspec.Struct):
    at: float
    bootstrap: str
    problems: list[str]
    brokers: list[Broker] = []
    topics: list[TopicState] = []
    partitions: list[PartitionState] = []
    workers: list[WorkerState] = []
    model: ModelState | None = None
    last_retrain: RetrainState | None = None
    drift: DriftState | None = None
    controller: ControllerReport | None = None  # the retrain controller's last report, if one ever ran
    apps: list[AppState] = []
    containers: list[ContainerState] = []

    @property
    def healthy(self) -> bool:
        return not self.problems


def report(settings: Settings, timeout: float = 5.0, interval: float = 3.0) -> Report:
    """The report; ``KafkaUnreachable`` if the cluster does not answer within ``timeout`` (``velox status``
    makes that the report's one problem). Lag is read twice, ``interval`` seconds apart, to see whether it grows."""
    started = time.monotonic()
    meta = clients.metadata(settings, clients.admin_client(settings), timeout=timeout)
    observations = settings.topic("observations")
    present = set(meta.topics)
    result = Report(time.time(), settings.bootstrap, [],
                    brokers=[Broker(b.id, f"{b.host}:{b.port}") for b in sorted(meta.brokers.values(), key=lambda b: b.id)],
                    topics=[_topic_state(meta.topics[name]) for name in sorted(present)
                            if name.startswith(settings.namespace) and not name.startswith("__")])
    for topic in result.topics:
        if topic.short:
            result.problems.append(f"topic {topic.name}: partitions {_listed(topic.short)} have {topic.in_sync} of "
                                   f"{topic.replicas} replicas in sync")
    if observations not in present:
        result.problems.append(f"no topic {observations}: no system runs here (velox up starts one)")
        return result
    before = positions.group_positions(settings, settings.app_id, observations)

    def table(name: str, decode: Callable[[bytes], T]) -> dict[str, T]:
        topic = settings.topic(name)
        return compacted.read_table(settings, topic, decode) if topic in present else {}

    result.partitions, result.workers = _ownership(settings, before, table("owners", ownership.decode))
    result.model, result.last_retrain, result.drift = _model(settings, table, present)
    result.controller = table("retrain-controller", controller_report.decode).get(settings.model)
    result.apps = _apps(settings, table("apps", application.decode_app), present)
    result.containers = _containers(table("containers", container_rpc.decode_registration))
    time.sleep(max(interval - (time.monotonic() - started), 0))
    after = positions.group_positions(settings, settings.app_id, observations)
    for state in result.partitions:
        applied, end = after[state.partition]
        state.stalled = applied == before[state.partition][0] and end - applied > before[state.partition][1] - applied
        state.applied, state.end, state.lag = applied, end, end - applied
    result.problems += _problems(result)
    return result


def _topic_state(meta: Any) -> TopicState:
    parts = meta.partitions.values()
    replicas = max((len(p.replicas) for p in parts), default=0)
    in_sync = min((len(p.isrs) for p in parts), default=0)
    short = sorted(p.id for p in parts if len(p.isrs) < len(p.replicas))
    return TopicState(meta.topic, len(meta.partitions), replicas, in_sync, short)


def _ownership(settings: Settings, offsets: dict[int, tuple[int, int]],
               claims: dict[str, ownership.Ownership]) -> tuple[list[PartitionState], list[WorkerState]]:
    """Each partition's owner: the latest claim, if its worker is still in the group."""
    members = groups.members(settings, settings.app_id, settings.topic("observations"))
    alive = {c.worker for c in claims.values() if members is None or c.worker in members}
    owners = ownership.owners([c for c in claims.values() if c.worker in alive])
    partitions = [PartitionState(p, owner.worker if owner else None, owner.edge if owner else None, applied, end,
                                 end - applied, False)
                  for p, (applied, end) in sorted(offsets.items()) for owner in [owners.get(p)]]
    workers = [WorkerState(c.worker, c.edge, c.partitions, None if members is None else c.worker in members,
                           _answers(c.edge))
               for c in sorted(claims.values(), key=lambda c: c.worker) if c.partitions]
    return partitions, workers


def _answers(edge: str) -> bool:
    try:  # a liveness probe: a self-signed certificate does not make the edge silent
        return httpx.get(f"{edge}/healthz", timeout=1.0, verify=False).status_code == 200
    except httpx.HTTPError:
        return False


def _model(settings: Settings, table: Callable[[str, Callable[[bytes], Any]], dict[str, Any]],
           present: set[str]) -> tuple[ModelState | None, RetrainState | None, DriftState | None]:
    activation = table("model-versions", model_version.decode_activation).get(settings.model)
    pin = table("model-pins", model_version.decode_pin).get(settings.model)
    stored = ModelStore(activation.store if activation else settings.model_store).list()
    newest = max(stored, key=lambda info: info.created_at, default=None)
    last = newest and RetrainState(newest.id, newest.created_at, newest.reason or "not recorded",
                                   bool(activation and activation.version.id == newest.id))
    if activation is None:
        return None, last, None
    info = activation.version
    metrics = settings.topic("model-metrics")
    read = _since(settings, metrics, activation.activated_at, RECENT_METRICS, error_window.decode) if metrics in present else []
    windows = [w for w in read if w.version == info.id and w.start >= activation.activated_at]
    model = ModelState(settings.model, info.id, activation.activated_at, activation.reason, info.created_at,
                       info.training_rows, info.validation_rmse, window_rmse(windows) if windows else None,
                       sum(w.count for w in windows), pin)
    return model, last, _drift(windows, info.validation_rmse, pin is not None and pin.version == info.id)


def _drift(windows: list[ErrorWindow], validation: float | None, pinned: bool) -> DriftState:
    now = time.time()
    recent = [w for w in windows if w.end >= now - DRIFT_WINDOW]
    online = window_rmse(recent) if recent else None
    ratio = online / validation if online is not None and validation else None
    return DriftState(online, validation, ratio, pinned)


def _since(settings: Settings, topic: str, when: float, most: int, decode: Callable[[bytes], T]) -> list[T]:
    """The records of a one-partition topic written since ``when``, the last ``most`` of them at most."""
    reader = clients.consumer(settings, group=f"{settings.app_id}-status")
    try:
        low, end = positions.watermarks(reader, TopicPartition(topic, 0))
        start = max(positions.offset_at(reader, topic, 0, when), end - most, low)
    finally:
        reader.close()
    return [decode(m.value()) for batch in clients.read_range(settings, topic, 0, start, end) for m in batch]


def _apps(settings: Settings, apps: dict[str, application.App], present: set[str]) -> list[AppState]:
    topic = settings.topic("decisions")
    decided = _since(settings, topic, 0, RECENT_DECISIONS, application.decode_decision) if apps and topic in present else []
    found = []
    for app in sorted(apps.values(), key=lambda a: a.name):
        counts = Counter(d.model for d in decided if d.app == app.name)
        total = sum(counts.values())
        found.append(AppState(app.name, app.policy, app.models, total,
                              {model: counts[model] / total for model in app.models} if total else {}))
    return found


def _containers(rows: dict[str, container_rpc.Registration]) -> list[ContainerState]:
    now = time.time()
    found = []
    for name in sorted({row.name for row in rows.values()}):
        serving = container_registry.serving(rows, name, now)
        found.append(ContainerState(name, serving[0] if serving else None,
                                    sorted(r.address for r in serving[1]) if serving else []))
    return found


def _problems(report: Report) -> list[str]:
    problems = []
    if unowned := [p.partition for p in report.partitions if p.owner is None]:
        problems.append(f"partitions {_listed(unowned)} have no owner (no worker holds them)")
    for state in report.partitions:
        if state.stalled:
            problems.append(f"partition {state.partition}'s lag is growing ({state.lag}) and its owner "
                            f"{state.owner or '(none)'} applied nothing")
    problems += [f"container {c.name} has no live replica" for c in report.containers if not c.replicas]
    return problems


def _listed(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers))
