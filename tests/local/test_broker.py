"""`velox kafka start | status | stop` on a broker of its own, beside the session's broker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from velox.errors import BrokerError
from velox.kafka import positions
from velox.local.broker import LocalBroker, free_bootstrap, throwaway_broker
from velox.settings import Settings


def velox(*args: str, settings: Settings, answer: str | None = None) -> subprocess.CompletedProcess[str]:
    """`velox ARGS` with ``settings`` as its VELOX_* variables; ``answer`` on its standard input, else
    none at all (as from a script)."""
    return subprocess.run(
        [sys.executable, "-m", "velox.cli", *args], env={**os.environ, **settings.to_env()}, input=answer,
        stdin=None if answer is not None else subprocess.DEVNULL, capture_output=True, text=True, timeout=180,
    )


def is_running(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[1][0] != "Z"


def test_kafka_cli_start_is_idempotent_status_reports_and_stop_leaves_no_process(
    settings: Settings, tmp_path: Path
) -> None:
    own = settings.replace(data=tmp_path, bootstrap=free_bootstrap())
    try:
        first = velox("kafka", "start", settings=own)
        assert first.returncode == 0, first.stderr
        assert "kafka ready" in first.stderr
        pid = LocalBroker(own).status().pid
        assert pid is not None and is_running(pid)
        assert AdminClient({"bootstrap.servers": own.bootstrap}).list_topics(timeout=10).brokers

        again = velox("kafka", "start", settings=own)
        assert again.returncode == 0, again.stderr
        assert LocalBroker(own).status().pid == pid
        foreground = velox("kafka", "run", settings=own)  # would overwrite the running broker's pid file
        assert foreground.returncode == 1 and f"a broker already runs on {tmp_path} (pid {pid})" in foreground.stderr
        assert LocalBroker(own).status().pid == pid

        status = velox("kafka", "status", settings=own)
        assert status.returncode == 0
        assert f"running (pid {pid}) at {own.bootstrap}" in status.stdout
        assert str(tmp_path / "kafka" / "server.log") in status.stdout
    finally:
        stop = velox("kafka", "stop", settings=own)
    assert stop.returncode == 0, stop.stderr
    assert not is_running(pid)
    stopped = velox("kafka", "status", settings=own)
    assert stopped.returncode == 3
    assert "kafka stopped" in stopped.stdout


def test_kafka_start_on_a_taken_port_says_which_port(settings: Settings, tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        own = settings.replace(data=tmp_path, bootstrap=f"127.0.0.1:{port}")
        with pytest.raises(BrokerError, match=f"port 127.0.0.1:{port} is taken"):
            LocalBroker(own).start()


def test_kafka_start_failure_gives_reason_and_log_path(settings: Settings, tmp_path: Path) -> None:
    own = settings.replace(data=tmp_path, bootstrap=free_bootstrap(), kafka_heap="1k")
    broker = LocalBroker(own)
    with pytest.raises(BrokerError, match=f"broker exited during start: .*Too small .*heap.*; see {broker.log}"):
        broker.start()
    assert not broker.status().running


def test_cluster_ids_never_start_with_a_dash() -> None:
    from velox.local.broker import _cluster_id

    ids = [_cluster_id() for _ in range(5000)]
    assert all(len(cluster) == 22 and not cluster.startswith("-") for cluster in ids)


def test_kafka_run_becomes_the_broker_in_the_foreground_logging_to_stdout(settings: Settings, tmp_path: Path) -> None:
    """What a container runs: the JVM in the command's place (status finds it by the pid it was
    started as), its log on stdout, and SIGTERM stops it."""
    own = settings.replace(data=tmp_path, bootstrap=free_bootstrap())
    stdout = tmp_path / "stdout"
    with stdout.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "velox.cli", "--bootstrap", own.bootstrap, "--data", str(own.data), "kafka", "run"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while velox("kafka", "status", settings=own).returncode != 0:
            assert process.poll() is None and time.monotonic() < deadline, "the broker did not come up"
            time.sleep(0.5)
        assert LocalBroker(own).status().pid == process.pid
        assert AdminClient({"bootstrap.servers": own.bootstrap}).list_topics(timeout=10).brokers
        assert not (tmp_path / "kafka" / "server.log").exists()  # its log goes to stdout
    finally:
        process.terminate()
        process.wait(timeout=60)
    output = stdout.read_text()
    assert process.returncode in (0, 143), output[-2000:]
    assert "Kafka Server started" in output


def test_a_throwaway_broker_is_plain_text_whatever_credentials_the_settings_carry(settings: Settings, tmp_path: Path) -> None:
    """`velox evaluate` runs on one while VELOX_KAFKA_CONFIG names a secured broker's credentials
    (as `velox kafka start --secure` says to export): its clients must not bring them along."""
    secured = tmp_path / "client.properties"
    secured.write_text("security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\nsasl.username=velox\n"
                       "sasl.password=secret\n")
    with throwaway_broker(settings.replace(data=tmp_path / "private", kafka_config=secured)) as private:
        assert private.kafka_config is None
        assert positions.end_offsets(private, "nothing-here") == {}
