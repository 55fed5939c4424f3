"""`velox` commands as child processes: `velox up`, the evaluation, the tests and benchmarks start them.

A child gets this process's environment plus the settings as ``VELOX_*`` variables, so it
reads the same configuration; its output is appended to a log file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from velox.settings import Settings


def spawn(settings: Settings, log_file: Path, *command: str) -> subprocess.Popen[bytes]:
    """``velox COMMAND`` with these settings, its output appended to ``log_file``.

    The child runs in a session of its own: Ctrl-C or a closed terminal signals the parent
    alone, which stops its children in order (``stop``) instead of leaving that to the signal.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "velox.cli", *command], env={**os.environ, **settings.to_env()},
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


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
