"""``velox status``: the system's health on one screen (or as JSON); exit 1 with the reason when unhealthy."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from velox.settings import Settings

if TYPE_CHECKING:
    from velox.control.health import Report

SILENT_AFTER = 30.0  # seconds without a report from the retrain controller (it reports every 5 s) said as silence


def add(commands: argparse._SubParsersAction) -> None:
    status = commands.add_parser("status", help="is it healthy, is it learning, which version serves: one screen "
                                                "from the topics; exit 1 with the reason when unhealthy")
    status.add_argument("--json", action="store_true", help="the report as JSON, for scripts")
    status.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for Kafka before calling it unreachable")
    status.add_argument("--interval", type=float, default=3.0,
                        help="seconds between the two reads of each partition's lag (growing or not)")
    status.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    import msgspec

    from velox.control import health
    from velox.errors import KafkaUnreachable

    try:
        found = health.report(settings, args.timeout, args.interval)
    except KafkaUnreachable as exc:
        found = health.Report(time.time(), settings.bootstrap, [str(exc)])
    if args.json:
        print(msgspec.json.encode({**msgspec.to_builtins(found), "healthy": found.healthy}).decode())
    else:
        print("\n".join(screen(found)))
    return 0 if found.healthy else 1


def screen(report: Report) -> list[str]:
    """The report in plain words, the verdict first."""
    lines = [f"Velox at {report.bootstrap}: " + ("healthy" if report.healthy else "UNHEALTHY: " + "; ".join(report.problems))]
    if not report.brokers:  # Kafka did not answer: nothing else is known
        return lines
    lines.append(f"brokers: {len(report.brokers)} ({', '.join(f'{b.id} at {b.address}' for b in report.brokers)})")
    lines += [f"  topic {t.name}: {t.partitions} partitions, {t.replicas} replicas, {t.in_sync} in sync"
              for t in report.topics]
    if report.partitions:
        lines.append("partitions:")
    lines += [f"  {p.partition}: owner {p.owner or 'NONE'}, applied {p.applied} of {p.end}, lag {p.lag}"
              + (" and growing" if p.stalled else "") for p in report.partitions]
    if report.workers:
        lines.append("workers:")
    lines += [f"  {w.worker}: partitions {', '.join(map(str, w.partitions))}, edge {w.edge} "
              f"({'answers' if w.edge_answers else 'does not answer'})"
              + (", no longer in the worker group" if w.in_group is False else "") for w in report.workers]
    if (model := report.model) is not None:
        lines.append(f"model {model.name}: version {model.version}, activated {moment(model.activated_at)} "
                     f"({model.activated_because or 'no reason given'})")
        lines.append(f"  trained {moment(model.trained_at)} on {model.training_rows} rows, validation RMSE "
                     f"{number(model.validation_rmse)}, online RMSE since its activation {number(model.online_rmse)} "
                     f"over {model.online_count} observations")
        if model.pinned is not None:
            lines.append(f"  pinned: {model.pinned.version} since {moment(model.pinned.at)} ({model.pinned.by}); "
                         "automatic retrains save but do not activate (velox model unpin)")
    else:
        lines.append("model: no version activated yet (the workers serve the initial one)")
    if (last := report.last_retrain) is not None:
        lines.append(f"last retrain: version {last.version}, trained {moment(last.trained_at)}, trigger: {last.trigger}"
                     + ("" if last.active else ", not active"))
    if (drift := report.drift) is not None:
        ratio = f", {drift.ratio:.2f} × the validation RMSE" if drift.ratio is not None else ""
        lines.append(f"drift: online RMSE over the last minute {number(drift.online_rmse)}{ratio}"
                     + ("; the drift trigger is held by the pin" if drift.held_by_pin else ""))
    if (controller := report.controller) is not None:
        quiet = report.at - controller.at
        lines.append(f"retrain controller: {controller.triggers}" + (
            f"; SILENT for {quiet:.0f} s (not running?)" if quiet > SILENT_AFTER else ""))
        lines.append(f"  drift trigger: {controller.drift}" + (
            f"; running now: {controller.running}" if controller.running else "") + (
            f"; last run ended {moment(controller.last_run_at)}: {controller.last_outcome}"
            if controller.last_run_at is not None else "; no run yet"))
    else:
        lines.append("retrain controller: none has run (velox retrain --watch)")
    for app in report.apps:
        shares = ", ".join(f"{model} {share:.0%}" for model, share in app.shares.items()) or "no decisions yet"
        lines.append(f"app {app.name}: policy {app.policy}, models {', '.join(app.models) or 'none'}; "
                     f"of its last {app.decisions} decisions: {shares}")
    for container in report.containers:
        lines.append(f"container {container.name}: version {container.serving or 'none'}, "
                     f"{len(container.replicas)} live replicas {' '.join(container.replicas)}".rstrip())
    return lines


def moment(at: float) -> str:
    """A time as an operator reads it: UTC, to the second."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
