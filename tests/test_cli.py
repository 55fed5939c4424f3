"""What a newcomer meets on the command line: help that says what each command does, their own
data reported when it is not loaded, and a way to start over."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.local.test_broker import is_running, velox
from velox import processes
from velox.cli import build_parser
from velox.cli.flags import settings_of
from velox.cli.up import load_if_new, local_brokers
from velox.control import topics
from velox.kafka import positions
from velox.local.broker import LocalBroker, LocalCluster, free_bootstrap
from velox.local.loader import PYSPARK_SAMPLE
from velox.settings import Settings


def test_help_says_what_each_command_does_today_in_plain_words() -> None:
    parser = build_parser()
    text = parser.format_help()
    assert "``" not in text and "Faust" not in text
    assert "apply the observations to each user's weights" in text
    assert "reset" in text


@pytest.mark.parametrize(("command", "unchanged"), [
    (["app", "link", "movies", "typo-model"], "model"),
    (["app", "register", "movies", "--default-output", "3", "--epsilon", "0.3"], "epsilon"),
    (["app", "register", "movies", "--default-output", "3", "--slo-ms", "5"], "slo_ms"),
    (["container", "run", "m:f", "--name", "n", "--version", "7", "--host", "0.0.0.0"], "edge_host"),
    (["model", "activate", "v9"], "model"),
])
def test_a_commands_arguments_set_no_setting_it_does_not_declare(command: list[str], unchanged: str) -> None:
    """Only the flags a command maps to settings become settings: an app's model or epsilon is not the
    edge's (``velox app link movies typo-model`` used to make every model name look served)."""
    assert getattr(settings_of(build_parser().parse_args(command)), unchanged) == getattr(Settings.from_env(), unchanged)


def test_the_flags_a_command_declares_set_their_settings() -> None:
    given = settings_of(build_parser().parse_args(
        ["--data", "/tmp/elsewhere", "worker", "--rule", "rls", "--engine", "faust", "--partitions", "3",
         "--metrics-port", "0"]))
    assert (given.data, given.rule, given.engine, given.partitions, given.worker_metrics_port) == (
        Path("/tmp/elsewhere"), "rls", "faust", 3, 0)
    served = settings_of(build_parser().parse_args(["serve", "--host", "0.0.0.0", "--port", "8123"]))
    assert (served.edge_host, served.edge_port) == ("0.0.0.0", 8123)
    assert settings_of(build_parser().parse_args(["evaluate", "--seed", "5"])).seed == 5
    assert settings_of(build_parser().parse_args(["container", "run", "m:f", "--name", "n",
                                                  "--model-threads", "2"])).model_threads == 2


def test_up_on_a_system_with_data_says_the_file_was_not_loaded_and_the_ways_forward(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    own = settings.replace(namespace=f"n{uuid.uuid4().hex[:8]}-", partitions=2)
    topics.ensure(own)
    mine = tmp_path / "u1.test"
    mine.write_text("1\t2\t3\t881250949\n")
    load_if_new(own, None)  # a new system: the sample
    held = sum(positions.end_offsets(own, own.topic("observations")).values())
    assert held == 1501
    with caplog.at_level(logging.WARNING, logger="velox"):
        load_if_new(own, mine)
    assert sum(positions.end_offsets(own, own.topic("observations")).values()) == held  # nothing loaded
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"{mine} was NOT loaded" in line and "1501 observations" in line
    assert f"velox load movielens {mine}" in line and "velox reset" in line


def test_reset_stops_the_broker_deletes_the_data_and_the_next_start_is_a_new_system(tmp_path: Path) -> None:
    own = Settings.from_env().replace(data=tmp_path / "velox", bootstrap=free_bootstrap(), partitions=2)
    broker = LocalBroker(own)
    broker.start()
    try:
        topics.ensure(own)
        load_if_new(own, PYSPARK_SAMPLE)
        assert sum(positions.end_offsets(own, own.topic("observations")).values()) == 1501
        grown = velox("kafka", "start", "--brokers", "3", settings=own)  # it would orphan the running broker
        assert grown.returncode == 1 and "holds a Kafka of 1 broker, not 3" in grown.stderr, grown.stderr
        assert broker.status().running and not (own.data / "kafka" / "nodes").exists()
        refused = velox("reset", settings=own, answer="n\n")
        assert refused.returncode == 1 and own.data.exists() and broker.status().running
        done = velox("reset", "--yes", settings=own)
        assert done.returncode == 0, done.stderr
        assert not broker.status().running
        assert not own.data.exists()
        assert f"removed {own.data}" in done.stderr
        broker.start()
        topics.ensure(own)
        assert sum(positions.end_offsets(own, own.topic("observations")).values()) == 0  # `velox up` loads the sample
    finally:
        broker.stop()


def test_up_joins_a_running_local_cluster_and_reset_stops_every_node_before_deleting(tmp_path: Path) -> None:
    """After `velox kafka start --brokers 2`, `velox up` uses those brokers (it neither starts a
    broker of its own on a node's port nor stops theirs), and `velox reset` stops both JVMs, not
    only a single broker's, before it deletes their files."""
    own = Settings.from_env().replace(data=tmp_path / "velox", bootstrap=free_bootstrap(ports=4), partitions=2)
    cluster = LocalCluster(own, brokers=2)
    cluster.start()
    pids = [status.pid for status in cluster.status()]
    own = own.replace(bootstrap=cluster.bootstrap)
    try:
        assert len(pids) == 2 and all(pid is not None and is_running(pid) for pid in pids)
        brokers, ours = local_brokers(own)
        assert not ours and [status.pid for status in brokers.status()] == pids
        for refused in (("kafka", "run"), ("kafka", "start", "--brokers", "1")):  # one broker beside the cluster's
            done = velox(*refused, settings=own)
            assert done.returncode == 1 and f"{own.data} holds a Kafka of 2 brokers, not 1" in done.stderr, done.stderr
        assert [status.pid for status in LocalCluster(own).status()] == pids
        # A node that died and cannot start again (its storage names another node) fails the start,
        # and the node that ran keeps running.
        os.kill(pids[1], signal.SIGKILL)
        meta = cluster.nodes[1].log_dirs / "meta.properties"
        kept = meta.read_text()
        meta.write_text(kept.replace("node.id=2", "node.id=7"))
        done = velox("kafka", "start", settings=own)
        assert done.returncode == 1 and "the broker exited during start" in done.stderr, done.stderr
        assert is_running(pids[0]) and LocalCluster(own).nodes[0].status().pid == pids[0]
        meta.write_text(kept)
        pids[1] = cluster.start()[1].pid
        done = velox("reset", "--yes", settings=own)
        assert done.returncode == 0, done.stderr
        assert not any(is_running(pid) for pid in pids), done.stderr
        assert not own.data.exists()
    finally:
        for pid in pids:
            if pid is not None and is_running(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_second_up_on_the_same_data_is_refused_and_leaves_the_first_alone(tmp_path: Path) -> None:
    own = Settings.from_env().replace(data=tmp_path / "velox", bootstrap=free_bootstrap())
    own.data.mkdir()
    # A process that shows in /proc as `velox up` does, for the first.
    first = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "velox.cli", "up"])
    try:
        processes.up_pid_file(own).write_text(str(first.pid))
        done = velox("up", settings=own)
        assert done.returncode == 1 and f"velox up already runs on {own.data} (pid {first.pid})" in done.stderr, done.stderr
        assert processes.up_pid_file(own).read_text() == str(first.pid) and not (own.data / "kafka").exists()
    finally:
        first.kill()
        first.wait()


def test_load_if_empty_loads_a_new_system_once(settings: Settings) -> None:
    """What the compose file's loader runs at every `up`: the sample into an empty system, then never again."""
    own = settings.replace(namespace=f"l{uuid.uuid4().hex[:8]}-", partitions=2)
    command = [sys.executable, "-m", "velox.cli", "load", "movielens", "--if-empty"]
    env = {**os.environ, **own.to_env()}
    for _ in range(2):
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stderr
    assert sum(positions.end_offsets(own, own.topic("observations")).values()) == 1501
    assert "nothing loaded" in done.stderr and "1501 observations" in done.stderr


@pytest.mark.parametrize(("command", "said"), [
    (["load", "movielens", "{tmp}/missing.csv"], "no ratings file at {tmp}/missing.csv"),
    (["up", "--ratings", "{tmp}/missing.csv"], "no ratings file at {tmp}/missing.csv"),
    (["evaluate", "--json", "{tmp}/no/result.json"], "--json {tmp}/no/result.json: there is no folder {tmp}/no"),
    (["load", "synthetic", "{tmp}/no/items.npz"], "the item features' file {tmp}/no/items.npz: there is no folder"),
    (["retrain", "--conf", "spark.driver.memory"], "--conf 'spark.driver.memory': a Spark setting is KEY=VALUE"),
    (["retrain", "--every", "600"], "--every is for the controller: add --watch"),
    (["kafka", "start", "--brokers", "0"], "--brokers 0: start takes a cluster's size, 1 or more"),
    (["kafka", "run", "--brokers", "3"], "--brokers 3: start takes a cluster's size"),
    (["reset"], "nothing removed"),  # from a script: no answer on standard input
    (["load", "items", "{tmp}/u.item"], "no items file at {tmp}/u.item"),
    (["evaluate", "--items", "{tmp}/u.item"], "no items file at {tmp}/u.item"),
], ids=["load-missing", "up-missing", "evaluate-json", "synthetic-out", "conf", "every-without-watch",
        "zero-brokers", "run-brokers", "reset-no-stdin", "items-missing", "evaluate-items-missing"])
def test_a_wrong_argument_is_one_line_before_anything_starts(tmp_path: Path, command: list[str], said: str) -> None:
    """No traceback, nothing started: the broker's address is closed and no broker's folder appears."""
    own = Settings.from_env().replace(data=tmp_path / "velox", bootstrap=free_bootstrap())
    own.data.mkdir()
    (own.data / "something").write_text("kept")
    try:
        done = velox(*(part.format(tmp=tmp_path) for part in command), settings=own)
    finally:
        if (own.data / "kafka").exists():  # a broker the command should not have started
            LocalCluster(own).stop()
    assert done.returncode == 1, done.stderr
    assert said.format(tmp=tmp_path) in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (own.data / "kafka").exists() and (own.data / "something").exists()


@pytest.mark.parametrize("command", [["serve"], ["worker"], ["worker", "--engine", "faust"], ["load", "movielens"]])
def test_a_partition_count_other_than_the_topics_is_refused_naming_both(settings: Settings, command: list[str]) -> None:
    """An edge with another count would read a known user's state from another partition."""
    made = settings.replace(namespace=f"p{uuid.uuid4().hex[:8]}-", partitions=2, worker_metrics_port=0,
                            edge_port=int(free_bootstrap().rsplit(":", 1)[1]))
    topics.ensure(made)
    done = velox(*command, settings=made.replace(partitions=4))
    assert done.returncode == 1, done.stderr
    assert (f"topic {made.topic('observations')} has 2 partitions but VELOX_PARTITIONS is 4" in done.stderr
            and "Traceback" not in done.stderr), done.stderr
    assert sum(positions.end_offsets(made, made.topic("observations")).values()) == 0  # nothing loaded
