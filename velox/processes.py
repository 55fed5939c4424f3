"""`velox` commands as child processes: `velox up`, the evaluation, the tests and benchmarks start them.

A child gets this process's environment plus the settings as ``VELOX_*`` variables, so it
reads the same configuration; its output is appended to a log file.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from velox.settings import Settings

log = logging.getLogger("velox")

_stop_asked = threading.Event()


def terminate(*_: object) -> None:
    """SIGTERM before a command installed its own handler (still importing Spark, say): a clean
    stop, exit 0 through the finally blocks, not death by signal (-15); remembered for ``on_stop``."""
    _stop_asked.set()
    raise SystemExit(0)


def on_stop(stop: Callable[[], object]) -> None:
    """From now on SIGTERM and SIGINT call ``stop``; at once if one came already.

    ``terminate``'s SystemExit can be lost: pyspark imports scipy inside ``except BaseException``,
    so a SIGTERM during that import was swallowed and the command went on (seen in CI as soon as
    scipy was installed)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop())
    if _stop_asked.is_set():
        stop()


@contextmanager
def stop_deferred() -> Iterator[None]:
    """SIGTERM and SIGINT wait for the block to end, then reach whichever handler is set.

    For starting Spark: pyspark launches its JVM and waits for the JVM to write where it listens,
    in a temporary folder removed on the way out. Stopped in that wait, the JVM's main thread
    fails to write there and ends, and py4j's listening thread keeps the JVM alive for good; once
    started, the JVM exits when we do. Outside the main thread (where signals cannot be caught)
    it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    handlers = {sig: signal.signal(sig, lambda sig, _: came.append(sig)) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        for sig in came[:1]:
            os.kill(os.getpid(), sig)


def stop_asked() -> bool:
    """Whether SIGTERM came before a handler of the command's own (see ``on_stop``)."""
    return _stop_asked.is_set()


def spawn(settings: Settings, log_file: Path, *command: str,
          env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``velox COMMAND`` with these settings (and ``env``), its output appended to ``log_file``.

    The child runs in a session of its own: Ctrl-C or a closed terminal signals the parent
    alone, which stops its children in order (``stop``) instead of leaving that to the signal.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "velox.cli", *command],
                                env={**os.environ, **settings.to_env(), **(env or {})},
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def supervise(what: str, start: Callable[[int], subprocess.Popen[bytes]], count: int,
              died: Callable[[int], object] = lambda pid: None, restart_after: float = 1.0) -> None:
    """Children ``start(0)`` to ``start(count - 1)``, each started again when it dies (``died``
    told its pid first), until SIGTERM or SIGINT; then each is stopped cleanly, in order."""
    stopping = threading.Event()
    on_stop(stopping.set)
    running = {slot: start(slot) for slot in range(count)}
    log.info("%s: %d processes, pids %s", what, count, [p.pid for p in running.values()])
    try:
        while not stopping.wait(restart_after):
            for slot, process in running.items():
                if process.poll() is not None:
                    log.warning("%s %d (pid %d) exited with %s: started again", what, slot, process.pid,
                                process.returncode)
                    died(process.pid)
                    running[slot] = start(slot)
    finally:
        for process in running.values():
            stop(process, timeout=10)
    log.info("%s stopped", what)


def stop(process: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    """Ask the child to stop (SIGTERM, its clean stop), kill it if it has not within ``timeout``; its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return process.returncode


class Watch:
    """Children a command needs while it runs (``velox up``'s worker and controller): the first to
    exit on its own stops the command, by a SIGTERM to itself through whichever handler is set
    (the server's, or ``terminate``), and is kept in ``died`` for the command to name."""

    POLL = 0.5  # seconds between looks

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.died: tuple[str, int, Path] | None = None
        self.stopping = threading.Event()
        threading.Thread(target=self._run, name="velox-children", daemon=True).start()

    def spawn(self, name: str, settings: Settings, log_file: Path, *command: str) -> subprocess.Popen[bytes]:
        """``spawn``, watched."""
        process = spawn(settings, log_file, *command)
        self.children.append((name, process, log_file))
        return process

    def stop(self) -> None:
        """From now on an exit is the command's own doing: not a failure."""
        self.stopping.set()

    def _run(self) -> None:
        while not self.stopping.wait(self.POLL):
            for name, process, log_file in list(self.children):
                if (code := process.poll()) is not None and not self.stopping.is_set():
                    self.died = (name, code, log_file)
                    os.kill(os.getpid(), signal.SIGTERM)
                    return


def up_pid_file(settings: Settings) -> Path:
    """Where a running ``velox up`` leaves its pid, so that ``velox reset`` can stop it."""
    return settings.data / "up.pid"


def running_up(settings: Settings) -> int | None:
    """The pid of the ``velox up`` running on this data directory, if one is."""
    try:
        pid = int(up_pid_file(settings).read_text())
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ValueError):
        return None
    ours = b"up" in command and any(part.endswith((b"/velox", b"velox.cli")) for part in command)
    return pid if ours else None


def stop_pid(pid: int, timeout: float = 90.0) -> bool:
    """SIGTERM (a clean stop) to a process that is not our child; whether it was gone within ``timeout``."""
    os.kill(pid, signal.SIGTERM)
    return wait_exit(pid, timeout)


def is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except FileNotFoundError:
        return True


def wait_exit(pid: int, timeout: float) -> bool:
    """Whether the process ``pid`` exited (or is a zombie) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or is_zombie(pid):
            return True
        time.sleep(0.05)
    return False
