"""``velox retrain --watch``: start the retrain job on a schedule, after N new observations, or on drift.

Drift: the active version's online RMSE (the workers' prequential windows on ``model-metrics``)
stays above its validation RMSE × (1 + tolerance) for a whole window, counted from the version's
activation and from the last run: windows measured before either (on the version rolled back from,
or on this version when it was active before) say nothing of it now. The decision is the pure
function ``should_retrain``; the loop around it runs one job at a time, waits ``debounce``
seconds after each, and logs why each run started and how it ended. A failed job leaves the active version as it was.
A version pinned by an operator (``velox.control.pins``) holds: runs still train and save, but
activate nothing until the pin is lifted. Every few seconds, and at each run, the controller says its
triggers, the drift trigger's state and its last run's outcome on ``retrain-controller``
(``velox.control.controller_reports``), which ``velox status`` shows. Each loop also sends the records
of ``items`` the readers skip to ``items-dlq`` (``velox.control.items.Checker``).

The job is a callable ``job(reason, activate)`` (``velox.batch.job.WarmJob`` in ``velox retrain --watch``: one Spark
session kept warm across runs); runs are sequential, so two never overlap, and the job's own
lock file also refuses a ``velox retrain`` started by hand meanwhile.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from confluent_kafka import TopicPartition

from velox.control import controller_reports, items, pins, retrain_requests, versions
from velox.kafka import clients, positions, topic_admin
from velox.model.prequential import window_rmse
from velox.schemas import error_window as metrics_schema
from velox.schemas.controller_report import ControllerReport
from velox.schemas.error_window import ErrorWindow
from velox.schemas.model_version import Activation
from velox.schemas.retrain_request import RetrainRequest
from velox.settings import Settings

log = logging.getLogger("velox.controller")

REPORT_EVERY = 5.0  # seconds between the controller's reports on retrain-controller


@dataclass(frozen=True)
class Triggers:
    every: float | None = None  # seconds between runs
    after: int | None = None  # new observations since the active version's training end
    drift: float | None = None  # tolerance over the validation RMSE
    window: float = 60.0  # seconds the drift must last
    debounce: float = 30.0  # seconds after a run before the next may start

    def __str__(self) -> str:
        said = [f"every {self.every:g} s" if self.every is not None else "",
                f"after {self.after} new observations" if self.after is not None else "",
                f"drift {self.drift:.0%} over the validation RMSE for {self.window:g} s" if self.drift is not None else ""]
        return ", ".join(part for part in said if part) + f"; {self.debounce:g} s between runs"


@dataclass(frozen=True)
class Observed:
    now: float
    last_run: float | None  # when the last run ended (None: never, since the controller started)
    active_since: float | None  # when the active version was activated
    new_observations: int
    validation_rmse: float | None
    windows: Sequence[ErrorWindow]  # the active version's recent prequential windows
    requests: Sequence[RetrainRequest] = ()  # asked for through the edge, not yet run


def should_retrain(seen: Observed, triggers: Triggers) -> str | None:
    """Why to retrain now, or None. A request through the edge is not debounced."""
    if seen.requests:
        return "requested: " + "; ".join(sorted({r.reason for r in seen.requests}))
    if seen.last_run is not None and seen.now - seen.last_run < triggers.debounce:
        return None
    if triggers.every is not None:
        since = seen.last_run if seen.last_run is not None else seen.active_since
        if since is None or seen.now - since >= triggers.every:
            return f"schedule: every {triggers.every:g} s"
    if triggers.after is not None and seen.new_observations >= triggers.after:
        return f"{seen.new_observations} new observations (threshold {triggers.after})"
    if triggers.drift is not None:
        return drift(seen, triggers)[0]
    return None


def drift(seen: Observed, triggers: Triggers) -> tuple[str | None, str]:
    """The drift trigger: why to retrain now (or None), and its state in words (what ``velox status`` shows)."""
    if triggers.drift is None:
        return None, "off"
    if seen.validation_rmse is None:
        return None, "waiting for an active version with a validation RMSE"
    limit = seen.validation_rmse * (1 + triggers.drift)
    since = max(seen.active_since or 0.0, seen.last_run or 0.0, seen.now - triggers.window - 1.0)
    recent = [w for w in seen.windows if w.start >= since]
    if not recent:
        return None, f"no online error measured yet since the activation or the last run (limit {limit:.4f})"
    measured = seen.now - min(w.start for w in recent)
    drains: dict[float, list[ErrorWindow]] = {}
    for window in recent:  # one drain writes a window per partition, all with the same end
        drains.setdefault(round(window.end), []).append(window)
    online = window_rmse(recent)
    if not all(window_rmse(group) > limit for group in drains.values()):
        return None, f"online RMSE {online:.4f}, not above {limit:.4f} throughout the last {measured:.0f} s"
    if measured < triggers.window - 1.0:
        return None, f"online RMSE {online:.4f} above {limit:.4f} for {measured:.0f} of {triggers.window:g} s"
    return f"drift: online RMSE {online:.4f} above {limit:.4f} for {triggers.window:g} s", "fired"


class Controller:
    def __init__(self, settings: Settings, triggers: Triggers, job: Callable[[str, bool], object],
                 poll: float = 1.0) -> None:
        self.settings = settings
        self.triggers = triggers
        self.job = job
        self.poll = poll
        self.follower = versions.Follower(settings)
        self.active: Activation | None = self.follower.latest()
        self.windows: list[ErrorWindow] = []
        self.metrics = clients.consumer(settings, group=f"{settings.app_id}-controller-{uuid.uuid4().hex[:6]}",
                                      **{"auto.offset.reset": "latest"})
        self.metrics.subscribe([settings.topic("model-metrics")])
        self.requests = retrain_requests.reader(settings)
        self.items = items.Checker(settings)  # bad attributes to items-dlq: every system runs a controller
        self.requested: list[RetrainRequest] = []
        self.last_run: float | None = None
        self.stopping = False
        controller_reports.ensure_topic(settings)
        self.reporter = clients.producer(settings)
        self.said_at = 0.0
        self.outcome = ""

    def run(self, runs: int | None = None) -> None:
        """Watch until stopped (or until ``runs`` jobs have run, for tests)."""
        done = 0
        while not self.stopping and (runs is None or done < runs):
            seen = self.observe()
            reason = should_retrain(seen, self.triggers)
            self.report(seen, reason)
            if reason is None:
                time.sleep(self.poll)
                continue
            self.run_job(reason)
            self.said_at = 0.0  # its outcome is said at once
            done += 1
        self.report(self.observe())  # the last word: how the last run ended
        self.metrics.close()
        self.requests.close()
        self.items.close()
        self.follower.close()
        self.reporter.flush(10)

    def report(self, seen: Observed, running: str | None = None) -> None:
        """Say the controller's state, at most every REPORT_EVERY seconds unless a run starts."""
        if running is None and seen.now - self.said_at < REPORT_EVERY:
            return
        self.said_at = seen.now
        controller_reports.say(self.settings, self.reporter, ControllerReport(
            self.settings.model, seen.now, str(self.triggers), drift(seen, self.triggers)[1], running, self.last_run,
            self.outcome))

    def observe(self) -> Observed:
        while (activation := self.follower.poll()) is not None:
            self.active = activation
        for message in self.metrics.consume(1000, timeout=0):
            if message.error() is None:
                self.windows.append(metrics_schema.decode(message.value()))
        self.requested += retrain_requests.pending(self.requests, self.settings)
        self.items.check()
        now = time.time()
        version = self.active.version if self.active else None
        horizon = now - self.triggers.window - 60
        self.windows = [w for w in self.windows if w.end >= horizon]
        return Observed(
            now=now, last_run=self.last_run, active_since=self.active.activated_at if self.active else None,
            new_observations=self.new_observations(version.training_end if version else {}),
            validation_rmse=version.validation_rmse if version else None,
            windows=[w for w in self.windows if version and w.version == version.id],
            requests=self.requested,
        )

    def new_observations(self, training_end: dict[int, int]) -> int:
        topic = self.settings.topic("observations")
        ends = [positions.watermarks(self.metrics, TopicPartition(topic, p), timeout=10)[1]
                for p in range(topic_admin.partition_count(self.settings, topic))]
        return sum(max(end - training_end.get(p, 0), 0) for p, end in enumerate(ends))

    def run_job(self, reason: str) -> bool:
        pinned = pins.current(self.settings)
        if pinned is None:
            log.info("retrain starting: %s", reason)
        else:
            log.info("retrain starting: %s; its version will be saved, not activated: %s is pinned (%s; "
                     "velox model unpin lifts it)", reason, pinned.version, pinned.by)
        started = time.monotonic()
        try:
            made = self.job(reason, pinned is None)
        except Exception as exc:  # any failure of the job is reported; the controller goes on
            log.error("retrain failed after %.1f s, active version unchanged: %s: %s",
                      time.monotonic() - started, type(exc).__name__, exc)
            self.outcome = f"failed: {type(exc).__name__}: {exc}"
            return False
        finally:
            self.last_run = time.time()
            if self.requested:  # answered, whatever the outcome: the log says how it ended
                self.requests.commit(asynchronous=False)
                self.requested = []
        log.info("retrain finished in %.1f s", time.monotonic() - started)
        self.outcome = f"trained {getattr(made, 'id', 'a version')}" + (
            "" if pinned is None else f", not activated: {pinned.version} is pinned")
        return True
