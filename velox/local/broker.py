"""Real Apache Kafka brokers in KRaft mode, run from the official jars: one, or a local cluster.

A single broker keeps everything under ``<data>/kafka``: ``server.properties``, the log
directory ``data/``, the broker's own log ``server.log`` and its pid in ``broker.pid``; node n of
a cluster (``LocalCluster``) the same under ``<data>/kafka/node-<n>``, with the cluster's size
in ``<data>/kafka/nodes``. Start is idempotent, readiness is the broker answering metadata (not a
fixed sleep), and stop waits until the JVM is gone.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from velox.errors import BrokerError, ConfigError
from velox.local import jars
from velox.local.broker_secrets import BrokerSecrets
from velox.processes import is_zombie, wait_exit
from velox.settings import Settings

MAIN_CLASS = "kafka.Kafka"


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    data: Path
    log: Path
    ready: bool = False  # its listener accepts connections

    def describe(self) -> str:
        state = f"running (pid {self.pid}{'' if self.ready else ', not listening yet'})" if self.running else "stopped"
        return f"kafka {state} at {self.bootstrap}; data {self.data}; log {self.log}"


class LocalBroker:
    """The broker for ``settings.bootstrap``: listener on its port, controller on port + 1.

    Node ``node`` of a cluster of ``nodes`` (``LocalCluster``) listens two ports further per node
    before it, and keeps its files in ``<data>/kafka/node-<node>``.
    """

    def __init__(self, settings: Settings, node: int = 1, nodes: int = 1) -> None:
        self.settings, self.node, self.nodes = settings, node, nodes
        self.host, base = settings.broker_address
        self.port = base + 2 * (node - 1)
        self.root = settings.data / "kafka"
        self.home = self.root if nodes == 1 else self.root / f"node-{node}"
        self.log_dirs = self.home / "data"
        self.config = self.home / "server.properties"
        self.log = self.home / "server.log"
        self.pid_file = self.home / "broker.pid"
        self.secrets = BrokerSecrets(self.root / "secure")  # made by a secure start: SASL_SSL, not PLAINTEXT

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def status(self) -> BrokerStatus:
        pid = self._live_pid()
        return BrokerStatus(pid is not None, pid, self.address, self.log_dirs, self.log,
                            pid is not None and _port_in_use(self.host, self.port))

    def start(self, timeout: float = 90.0, secure: bool = False) -> BrokerStatus:
        """Start the broker unless it runs already; return once it answers metadata. ``secure``: a new
        broker listens with SASL_SSL only (its credentials in ``self.secrets``); one secured once stays so."""
        if secure:
            self._secure()
        if self._live_pid() is None:
            self._launch()
        try:
            self._wait_ready(timeout)
        except BrokerError:
            self.stop()
            raise
        return self.status()

    def _launch(self) -> None:
        """Write the configuration, format the log directory if new, start the JVM; not waiting for it."""
        for port in (self.port, self.port + 1):
            if _port_in_use(self.host, port):
                raise BrokerError(
                    f"port {self.host}:{port} is taken by another process; the broker needs "
                    f"{self.port} and {self.port + 1}: set VELOX_BOOTSTRAP to a free host:port"
                )
        classpath = ":".join(str(jar) for jar in jars.fetch(jars.KAFKA_BROKER, self.settings.cache))
        self._write_config()
        self._format(classpath)
        self._spawn(classpath)

    def run(self, secure: bool = False) -> None:
        """Become the broker (exec), logging to stdout: a container's service, stopped by its signals.

        The pid file names this process, which the JVM replaces, so ``status`` finds it."""
        classpath = ":".join(str(jar) for jar in jars.fetch(jars.KAFKA_BROKER, self.settings.cache))
        if secure:
            self._secure()
        self._write_config(console=True)
        self._format(classpath)
        self.pid_file.write_text(str(os.getpid()))
        command = self._command(classpath)
        os.execvp(command[0], command)

    def stop(self, timeout: float = 30.0) -> BrokerStatus:
        """Stop the broker (TERM, then KILL after ``timeout``) and wait until it has exited."""
        return self._reap(self._terminate(), timeout)

    def _terminate(self) -> int | None:
        pid = self._live_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
        return pid

    def _reap(self, pid: int | None, timeout: float) -> BrokerStatus:
        if pid is not None and not wait_exit(pid, timeout):
            os.kill(pid, signal.SIGKILL)
            wait_exit(pid, 10.0)
        self.pid_file.unlink(missing_ok=True)
        return self.status()

    def _secure(self) -> None:
        """Make the credentials of a new secured broker; refuse to secure one formatted without them."""
        if self.secrets.exists():
            return
        if (self.log_dirs / "meta.properties").exists():
            raise BrokerError(f"the broker in {self.home} was made without SASL_SSL and its users cannot be added "
                              "now: start over with `velox reset` to make a secured one")
        self.secrets.make(self.host)

    @property
    def client_settings(self) -> Settings:
        """Settings a client reaches this broker with (a secured one's credentials file included)."""
        own = self.settings.replace(bootstrap=self.address) if self.nodes > 1 else self.settings
        if not self.secrets.exists():
            return own
        return own.replace(kafka_config=self.secrets.client_properties)

    def _write_config(self, console: bool = False) -> None:
        from velox.kafka import topic_admin

        self.home.mkdir(parents=True, exist_ok=True)
        controller = f"{self.host}:{self.port + 1}"
        secured = self.secrets.exists()
        name = "SASL_SSL" if secured else "PLAINTEXT"
        voters = ",".join(f"{n}@{self.host}:{self.port + 2 * (n - self.node) + 1}" for n in range(1, self.nodes + 1))
        # Every internal topic has a replica per node, up to three, and needs two in sync from three.
        replicas, insync = str(min(3, self.nodes)), str(topic_admin.min_insync(self.nodes))
        lines = {
            "process.roles": "broker,controller",
            "node.id": str(self.node),
            "controller.quorum.voters": voters,
            "listeners": f"{name}://{self.host}:{self.port},CONTROLLER://{controller}",
            "advertised.listeners": f"{name}://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": f"CONTROLLER:{'SSL' if secured else 'PLAINTEXT'},{name}:{name}",
            "log.dirs": str(self.log_dirs),
            "num.partitions": "1",
            "offsets.topic.replication.factor": replicas,
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": insync,
            "transaction.state.log.num.partitions": "8",
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": insync,
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            **(self.secrets.broker_config() if secured else {}),
        }
        self.config.write_text("".join(f"{key}={value}\n" for key, value in lines.items()))
        self.config.chmod(0o600)  # a secured broker's passwords are in it
        appender = ("appender.out.type = Console\n" if console else
                    f"appender.out.type = File\nappender.out.fileName = {self.log}\nappender.out.append = false\n")
        (self.home / "log4j2.properties").write_text(
            appender +
            "appender.out.name = out\n"
            "appender.out.layout.type = PatternLayout\n"
            "appender.out.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\n"
            "rootLogger.appenderRef.out.ref = out\n"
        )

    def _format(self, classpath: str) -> None:
        """Format the log directory once; later starts reuse it and keep the topics."""
        if (self.log_dirs / "meta.properties").exists():
            return
        result = subprocess.run(
            ["java", "-cp", classpath, "kafka.tools.StorageTool", "format",
             "-t", self._cluster(), "-c", str(self.config),
             *(self.secrets.format_arguments() if self.secrets.exists() else [])],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise BrokerError(f"formatting {self.log_dirs} failed: {result.stdout}{result.stderr}".strip())

    def _command(self, classpath: str) -> list[str]:
        heap = self.settings.kafka_heap
        return [
            "java", f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            "-cp", classpath, MAIN_CLASS, str(self.config),
        ]

    def _cluster(self) -> str:
        """The cluster id: a new one for a single broker; one shared by every node of a cluster."""
        if self.nodes == 1:
            return _cluster_id()
        shared = self.root / "cluster-id"
        if not shared.exists():
            shared.write_text(_cluster_id())
        return shared.read_text()

    def _spawn(self, classpath: str) -> None:
        command = self._command(classpath)
        # Through a shell that exits at once: the JVM is re-parented to init, so it outlives
        # the CLI and never lingers as our zombie; `velox kafka stop` ends it by pid.
        launched = subprocess.run(
            ["sh", "-c", '"$@" >>"$0" 2>&1 </dev/null & echo $!', str(self.home / "stdout.log"), *command],
            capture_output=True, text=True, check=True, start_new_session=True,
        )
        self.pid_file.write_text(launched.stdout.strip())

    def _wait_ready(self, timeout: float) -> None:
        from velox.kafka import clients

        deadline = time.monotonic() + timeout
        admin = clients.admin_client(self.client_settings, log_level=0)  # refused until the broker listens: expected
        while time.monotonic() < deadline:
            if self._live_pid() is None:
                raise BrokerError(f"the broker exited during start: {self._log_tail()}; see {self.log}")
            if _port_in_use(self.host, self.port):
                try:
                    if admin.list_topics(timeout=1.0).brokers:
                        return
                except Exception:  # KafkaException while the broker is still coming up
                    pass
            time.sleep(0.1)
        raise BrokerError(f"the broker did not answer within {timeout:.0f} s: {self._log_tail()}; see {self.log}")

    def _live_pid(self) -> int | None:
        """The pid in the pid file, if that process is alive and is our broker (not a reused pid)."""
        try:
            pid = int(self.pid_file.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ValueError):
            return None
        if MAIN_CLASS.encode() in cmdline and str(self.config).encode() in cmdline:
            return pid if not is_zombie(pid) else None
        return None

    def _log_tail(self) -> str:
        """The root cause the broker logged (its first exception), else the JVM's last words."""
        if self.log.exists():
            lines = self.log.read_text(errors="replace").splitlines()
            causes = [line for line in lines if "Exception: " in line] or [line for line in lines if " ERROR " in line]
            if causes:
                return causes[0].strip()
        stdout = self.home / "stdout.log"
        lines = stdout.read_text(errors="replace").split("\n") if stdout.exists() else []
        last = [line.strip() for line in lines if line.strip()][-2:]
        return " / ".join(last) or "nothing in the log"


class LocalCluster:
    """The local brokers of ``settings.data``: one, or the ``brokers`` a ``velox kafka start
    --brokers N`` made (remembered in ``<data>/kafka/nodes``, so stop and status find them all).
    Each node is broker and KRaft controller; a majority of them must run for any to serve."""

    def __init__(self, settings: Settings, brokers: int | None = None) -> None:
        self.count_file = settings.data / "kafka" / "nodes"
        held = int(self.count_file.read_text()) if self.count_file.exists() else \
            1 if LocalBroker(settings).config.exists() else None
        if brokers is not None and held is not None and brokers != held:
            # Another size would leave the running brokers unfound and their topics behind.
            raise ConfigError(f"{settings.data} holds a Kafka of {held} broker{'s' if held > 1 else ''}, not {brokers}: "
                              "start it as it is (`velox kafka start`), or start over (`velox reset`)")
        count = brokers or held or 1
        self.nodes = [LocalBroker(settings, node, count) for node in range(1, count + 1)]

    @property
    def bootstrap(self) -> str:
        """Every node's address: a client that knows them all reaches the cluster while any runs."""
        return ",".join(node.address for node in self.nodes)

    def start(self, timeout: float = 90.0, secure: bool = False) -> list[BrokerStatus]:
        if len(self.nodes) == 1:
            return [self.nodes[0].start(timeout, secure)]
        if secure:
            self.nodes[0]._secure()
        self.count_file.parent.mkdir(parents=True, exist_ok=True)
        self.count_file.write_text(str(len(self.nodes)))
        launched: list[LocalBroker] = []  # on failure these stop; nodes that ran already keep running
        try:
            for node in self.nodes:  # all launched before any is waited for: the quorum needs a majority
                if node._live_pid() is None:
                    node._launch()
                    launched.append(node)
            for node in self.nodes:
                node._wait_ready(timeout)
        except BrokerError:
            _stop(launched, timeout)
            raise
        return self.status()

    def stop(self, timeout: float = 30.0) -> list[BrokerStatus]:
        return _stop(self.nodes, timeout)

    def status(self) -> list[BrokerStatus]:
        return [node.status() for node in self.nodes]

    def running(self) -> list[BrokerStatus]:
        """The nodes that run now."""
        return [status for status in self.status() if status.running]


def _stop(nodes: list[LocalBroker], timeout: float) -> list[BrokerStatus]:
    """Every node at once: one by one, the last would wait on a quorum already gone."""
    pids = [node._terminate() for node in nodes]
    return [node._reap(pid, timeout) for node, pid in zip(nodes, pids)]


@contextmanager
def throwaway_broker(settings: Settings) -> Iterator[Settings]:
    """A plain broker on free ports with its data under ``settings.data``, for tests, benchmarks and
    ``velox evaluate``; its clients leave out any credentials the settings name (they are another broker's)."""
    settings = settings.replace(bootstrap=free_bootstrap(), kafka_config=None)
    broker = LocalBroker(settings)
    broker.start()
    try:
        yield settings
    finally:
        broker.stop()


def free_bootstrap(host: str = "127.0.0.1", ports: int = 2) -> str:
    """A ``host:port`` whose port and the ``ports - 1`` after it (a broker's controller, a cluster's
    other nodes) are free now: for throwaway brokers.

    Ports come from below the kernel's ephemeral range, so no client connection of this machine
    can take the controller's port between this check and the broker's bind.
    """
    low = _ephemeral_low()
    while True:
        port = random.randrange(10_000, low - ports)
        if all(_can_bind(host, port + k) for k in range(ports)):
            return f"{host}:{port}"


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return 32_768


def _can_bind(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding.

    Like Kafka's own ``Uuid.randomUuid``, never one starting with "-": the StorageTool's argument
    parser would read it as an option (seen here: a CI run failed on such an id).
    """
    import base64

    while (cluster := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"):
        pass
    return cluster


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
