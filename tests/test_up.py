"""`velox up`: broker, worker and edge; Ctrl-C stops them all and leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.test_broker import is_running
from velox.broker import LocalBroker, free_bootstrap
from velox.settings import Settings


def test_up_runs_broker_worker_and_edge_and_ctrl_c_stops_them(settings: Settings, tmp_path: Path) -> None:
    own = settings.replace(data=tmp_path, bootstrap=free_bootstrap(), worker_metrics_port=0, partitions=2)
    port = int(free_bootstrap().split(":")[1])
    log = tmp_path / "up.log"
    worker_log = tmp_path / "logs" / "worker.log"
    with open(log, "wb") as out:
        up = subprocess.Popen([sys.executable, "-m", "velox.cli", "up", "--port", str(port)],
                              env={**os.environ, **own.to_env()}, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        ready = None
        while time.monotonic() < deadline:
            assert up.poll() is None, log.read_text()
            try:
                ready = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).read())
                break
            except OSError:
                time.sleep(0.3)
        assert ready is not None and ready["ready"], log.read_text()
        predicted = json.loads(urllib.request.urlopen(
            f"http://127.0.0.1:{port}/v1/models/default/predict?user=1&item=2", timeout=5).read())
        assert predicted["known_user"] is False
        broker_pid = LocalBroker(own).status().pid
        assert broker_pid is not None
        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0, log.read_text()
    finally:
        if up.poll() is None:
            up.kill()
            LocalBroker(own).stop()
    text = log.read_text()
    assert "curl" in text and "worker stopped (exit 0)" in text and "kafka stopped" in text
    assert "worker worker-1 stopped" in worker_log.read_text()
    assert not is_running(broker_pid)
