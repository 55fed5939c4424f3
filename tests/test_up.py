"""`velox up`: a broker and a worker in the foreground; Ctrl-C stops both and leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.test_broker import is_running
from velox.broker import LocalBroker, free_bootstrap
from velox.settings import Settings


def test_up_runs_broker_and_worker_and_ctrl_c_stops_both(settings: Settings, tmp_path: Path) -> None:
    own = settings.replace(data=tmp_path, bootstrap=free_bootstrap(), worker_metrics_port=0, partitions=2)
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        up = subprocess.Popen([sys.executable, "-m", "velox.cli", "up"], env={**os.environ, **own.to_env()},
                              stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "ready: partitions [0, 1] assigned" not in log.read_text() and time.monotonic() < deadline:
            assert up.poll() is None, log.read_text()
            time.sleep(0.2)
        broker_pid = LocalBroker(own).status().pid
        assert broker_pid is not None
        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0, log.read_text()
    finally:
        if up.poll() is None:
            up.kill()
            LocalBroker(own).stop()
    assert "worker worker-1 stopped" in log.read_text()
    assert "kafka stopped" in log.read_text()
    assert not is_running(broker_pid)
