"""``velox container run``: a container's replicas, each its own process, restarted when one dies.

A replica is ``velox container replica``, a child process in a session of its own, its output in
``<data>/containers/<name>-<version>-<replica>.log``. Stopping the supervisor (SIGTERM, Ctrl-C)
stops every replica cleanly: each removes its registration.
"""

from __future__ import annotations

import logging
import subprocess
import threading

from velox import processes
from velox.containers import served_model
from velox.settings import Settings

log = logging.getLogger("velox.container")

RESTART_AFTER = 1.0  # seconds before a dead replica is started again


def run(settings: Settings, target: str, name: str, version: str, replicas: int, host: str, input_kind: str,
        threads: int) -> int:
    served_model.load(target)  # a bad target fails here, in one clear line, not in every replica's log
    stopping = threading.Event()
    processes.on_stop(stopping.set)

    def start(replica: int) -> subprocess.Popen[bytes]:
        log_file = settings.data / "containers" / f"{name}-{version}-{replica}.log"
        return processes.spawn(settings, log_file, "container", "replica", target, "--name", name, "--version",
                               version, "--replica", str(replica), "--host", host, "--input", input_kind,
                               "--threads", str(threads))

    running = {replica: start(replica) for replica in range(replicas)}
    log.info("container %s version %s: %d replicas of %s, pids %s", name, version, replicas, target,
             [p.pid for p in running.values()])
    try:
        while not stopping.wait(RESTART_AFTER):
            for replica, process in running.items():
                if process.poll() is not None:
                    log.warning("container %s replica %d (pid %d) exited with %s: started again", name, replica,
                                process.pid, process.returncode)
                    running[replica] = start(replica)
    finally:
        for process in running.values():
            processes.stop(process, timeout=10)
    log.info("container %s version %s stopped", name, version)
    return 0
