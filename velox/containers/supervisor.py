"""``velox container run``: a container's replicas, each its own process, restarted when one dies.

A replica is ``velox container replica``, a child process in a session of its own, its output in
``<data>/containers/<name>-<version>-<replica>.log``. Stopping the supervisor (SIGTERM, Ctrl-C)
stops every replica cleanly: each removes its registration.
"""

from __future__ import annotations

import subprocess

from velox import processes
from velox.containers import served_model
from velox.settings import Settings

RESTART_AFTER = 1.0  # seconds before a dead replica is started again


def run(settings: Settings, target: str, name: str, version: str, replicas: int, host: str, input_kind: str,
        threads: int) -> int:
    served_model.load(target)  # a bad target fails here, in one clear line, not in every replica's log

    def start(replica: int) -> subprocess.Popen[bytes]:
        log_file = settings.data / "containers" / f"{name}-{version}-{replica}.log"
        return processes.spawn(settings, log_file, "container", "replica", target, "--name", name, "--version",
                               version, "--replica", str(replica), "--host", host, "--input", input_kind,
                               "--threads", str(threads))

    processes.supervise(f"container {name} version {version} replica", start, replicas,
                        restart_after=RESTART_AFTER)
    return 0
