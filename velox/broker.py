"""A real single-node Apache Kafka broker in KRaft mode, run from the official jars.

Everything about it lives under ``<data>/kafka``: ``server.properties``, the log directory
``data/``, the broker's own log ``server.log`` and its pid in ``broker.pid``. Start is
idempotent, readiness is the broker answering metadata (not a fixed sleep), and stop waits
until the JVM is gone.
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

from velox import jars
from velox.broker_secrets import BrokerSecrets
from velox.errors import BrokerError
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
    """The broker for ``settings.bootstrap``: listener on its port, controller on port + 1."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.host, self.port = settings.broker_address
        self.home = settings.data / "kafka"
        self.log_dirs = self.home / "data"
        self.config = self.home / "server.properties"
        self.log = self.home / "server.log"
        self.pid_file = self.home / "broker.pid"
        self.secrets = BrokerSecrets(self.home / "secure")  # made by a secure start: SASL_SSL, not PLAINTEXT

    def status(self) -> BrokerStatus:
        pid = self._live_pid()
        return BrokerStatus(pid is not None, pid, self.settings.bootstrap, self.log_dirs, self.log,
                            pid is not None and _port_in_use(self.host, self.port))

    def start(self, timeout: float = 90.0, secure: bool = False) -> BrokerStatus:
        """Start the broker unless it runs already; return once it answers metadata. ``secure``: a new
        broker listens with SASL_SSL only (its credentials in ``self.secrets``); one secured once stays so."""
        if secure:
            self._secure()
        if self._live_pid() is not None:
            self._wait_ready(timeout)
            return self.status()
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
        try:
            self._wait_ready(timeout)
        except BrokerError:
            self.stop()
            raise
        return self.status()

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
        pid = self._live_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            if not wait_exit(pid, timeout):
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
        if not self.secrets.exists():
            return self.settings
        return self.settings.replace(kafka_config=self.secrets.client_properties)

    def _write_config(self, console: bool = False) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        controller = f"{self.host}:{self.port + 1}"
        name = "SASL_SSL" if self.secrets.exists() else "PLAINTEXT"
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{controller}",
            "listeners": f"{name}://{self.host}:{self.port},CONTROLLER://{controller}",
            "advertised.listeners": f"{name}://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,{name}:{name}",
            "log.dirs": str(self.log_dirs),
            "num.partitions": "1",
            # One broker: every internal topic has one replica.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "8",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            **(self.secrets.broker_config() if self.secrets.exists() else {}),
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
             "-t", _cluster_id(), "-c", str(self.config),
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
        from velox import kafka

        deadline = time.monotonic() + timeout
        admin = kafka.admin_client(self.client_settings, log_level=0)  # refused until the broker listens: expected
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


@contextmanager
def throwaway_broker(settings: Settings) -> Iterator[Settings]:
    """A broker on free ports with its data under ``settings.data``, for tests and benchmarks."""
    settings = settings.replace(bootstrap=free_bootstrap())
    broker = LocalBroker(settings)
    broker.start()
    try:
        yield settings
    finally:
        broker.stop()


def free_bootstrap(host: str = "127.0.0.1") -> str:
    """A ``host:port`` whose port and port + 1 (the controller) are free now: for throwaway brokers.

    Ports come from below the kernel's ephemeral range, so no client connection of this machine
    can take the controller's port between this check and the broker's bind.
    """
    low = _ephemeral_low()
    while True:
        port = random.randrange(10_000, low - 2)
        if _can_bind(host, port) and _can_bind(host, port + 1):
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
