"""A stop asked while a command is still starting is never lost (pure logic: no process is started)."""

from __future__ import annotations

import signal
import threading

import pytest

from velox import processes


def test_a_sigterm_swallowed_while_importing_still_stops_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes, "_stop_asked", threading.Event())
    kept = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:  # what pyspark does around its optional import of scipy
            processes.terminate()
        except BaseException:
            pass
        stopped: list[bool] = []
        processes.on_stop(lambda: stopped.append(True))
        assert stopped == [True] and processes.stop_asked()
    finally:
        for sig, handler in kept.items():
            signal.signal(sig, handler)


def test_without_an_earlier_sigterm_on_stop_only_installs_the_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes, "_stop_asked", threading.Event())
    kept = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        stopped: list[bool] = []
        processes.on_stop(lambda: stopped.append(True))
        assert stopped == []
        signal.raise_signal(signal.SIGTERM)
        assert stopped == [True]
    finally:
        for sig, handler in kept.items():
            signal.signal(sig, handler)
