"""Kafka clients configured the one way Velox uses them.

Producers are idempotent with ``acks=all`` and use the murmur2 partitioner, the same hash as
the Java client, so what they produce lands in its user's home partition
(``velox.schemas.partitioning``).

Every client also gets the properties of ``VELOX_KAFKA_CONFIG`` (credentials, TLS), and
Spark's Kafka source the same, named the Java client's way (``java_options``). Topics are
created with ``VELOX_REPLICATION`` replicas, at most as many as there are brokers.

The clients log through ``velox.kafka.client`` instead of librdkafka's own lines on stderr:
what they report at INFO or below, and conditions they retry by themselves (a coordinator still
loading at a broker's start), at DEBUG; a warning or error once a minute at most, however often
librdkafka repeats it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Generic, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from velox.errors import ConfigError, KafkaUnreachable
from velox.settings import Settings

T = TypeVar("T")

RETRIED = re.compile(r"retrying|load in progress|not available|Disconnected", re.IGNORECASE)
REPEAT_SECONDS = 60.0


class _ClientLines(logging.Filter):
    """Demotes librdkafka's chatter to DEBUG and drops a warning it repeats within a minute."""

    def __init__(self) -> None:
        super().__init__()
        self.last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.levelno <= logging.INFO or RETRIED.search(text):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return CLIENT_LOG.isEnabledFor(logging.DEBUG)
        gist = re.sub(r"\d+", "#", text)  # the same condition, whatever the ports, ids and timings
        now = time.monotonic()
        if now - self.last.get(gist, -REPEAT_SECONDS) < REPEAT_SECONDS:
            return False
        self.last[gist] = now
        return True


CLIENT_LOG = logging.getLogger("velox.kafka.client")
CLIENT_LOG.addFilter(_ClientLines())


def _client(settings: Settings) -> dict[str, Any]:
    """What every client gets: the bootstrap servers, ``VELOX_KAFKA_CONFIG``'s properties, our logger
    and the error callback that keeps the last refusal (``metadata`` names it)."""
    return {"bootstrap.servers": settings.bootstrap, **properties(settings.kafka_config), "logger": CLIENT_LOG,
            "error_cb": _remember}


REFUSALS = {KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError.SASL_AUTHENTICATION_FAILED}
_refused: dict[str, str] = {}  # "last": why a cluster refused us, the last time one did


def _remember(error: KafkaError) -> None:
    if error.code() in REFUSALS:
        _refused["last"] = error.str()


def metadata(settings: Settings, admin: AdminClient, topic: str | None = None, timeout: float = 30) -> Any:
    """``admin.list_topics``; when the cluster does not answer within ``timeout``, or at once when it
    refuses our credentials or TLS, a ``KafkaUnreachable`` that names the bootstrap servers and why."""
    deadline = time.monotonic() + timeout
    _refused.pop("last", None)
    while True:
        try:
            return admin.list_topics(topic, timeout=min(2.0, max(deadline - time.monotonic(), 0.1)))
        except KafkaException as exc:
            admin.poll(0)  # serves the error callbacks: a refusal, if that is what it was
            refused = _refused.get("last")
            if refused or time.monotonic() >= deadline:
                why = refused or exc.args[0].str()
                raise KafkaUnreachable(f"Kafka at {settings.bootstrap} did not answer: {why}") from None


@lru_cache(maxsize=4)
def properties(path: Path | None) -> dict[str, str]:
    """A Java-style properties file as a dict: ``key=value``, ``key: value`` or ``key value`` lines;
    ``#`` and ``!`` start comments. None: no file, no properties."""
    if path is None:
        return {}
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"VELOX_KAFKA_CONFIG {path} cannot be read: {exc.strerror}") from None
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        match = re.match(r"([^=:\s]+)(\s*[=:]\s*|\s+|$)(.*)", line)
        if match is None:  # (the line itself is not shown: it may hold a secret)
            raise ConfigError(f"VELOX_KAFKA_CONFIG {path}, line {number}: no property name before its value")
        found[match.group(1)] = match.group(3)
    return found


JAAS_MODULES = {"PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
                "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
                "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule"}


def faust_credentials(settings: Settings) -> Any:
    """``VELOX_KAFKA_CONFIG``'s security as Faust's ``broker_credentials`` (None: plaintext).

    aiokafka under Faust takes an SSL context and a SASL mechanism, user and password; other
    librdkafka properties have no counterpart there and are refused by name."""
    import ssl

    import faust

    given = dict(properties(settings.kafka_config))
    protocol = given.pop("security.protocol", "PLAINTEXT").upper()
    mechanism = given.pop("sasl.mechanisms", None) or given.pop("sasl.mechanism", None) or "PLAIN"
    user, password = given.pop("sasl.username", None), given.pop("sasl.password", None)
    context = ssl.create_default_context(cafile=given.pop("ssl.ca.location", None)) if "SSL" in protocol else None
    if given:
        raise ConfigError(f"VELOX_KAFKA_CONFIG: the faust engine cannot pass {', '.join(sorted(given))} to its "
                          "Kafka client (security.protocol, sasl.*, ssl.ca.location only); use --engine kafka")
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(username=user, password=password, mechanism=mechanism.upper(),
                                     ssl_context=context)
    return faust.SSLCredentials(context) if context is not None else None


def java_options(settings: Settings) -> dict[str, str]:
    """``VELOX_KAFKA_CONFIG``'s properties named as the Java client (Spark's Kafka source) knows them.

    librdkafka takes a user name and password and a CA file; Java takes a JAAS line and a trust
    store. Any other property passes as it is (most names are the same in both clients).

    >>> java_options(Settings())
    {}
    """
    given = dict(properties(settings.kafka_config))
    options: dict[str, str] = {}
    mechanism = given.pop("sasl.mechanisms", None) or given.pop("sasl.mechanism", None)
    if mechanism:
        options["sasl.mechanism"] = mechanism
    user, password = given.pop("sasl.username", None), given.pop("sasl.password", None)
    if user is not None:
        module = JAAS_MODULES.get((mechanism or "PLAIN").upper())
        if module is None:
            raise ConfigError(f"VELOX_KAFKA_CONFIG: sasl.mechanism {mechanism!r} cannot be given to Spark's "
                              f"Kafka source as a user name and password; use one of {sorted(JAAS_MODULES)}")
        options["sasl.jaas.config"] = f'{module} required username="{_quoted(user)}" password="{_quoted(password or "")}";'
    ca = given.pop("ssl.ca.location", None)
    if ca is not None:
        options.update({"ssl.truststore.type": "PEM", "ssl.truststore.location": ca})
    return {**given, **options}


def admin_client(settings: Settings, **overrides: Any) -> AdminClient:
    return AdminClient({**_client(settings), **overrides})


PRODUCER_DEFAULTS: Mapping[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "partitioner": "murmur2_random",
    "linger.ms": 5,
    "compression.type": "lz4",
}


def producer(settings: Settings, **overrides: Any) -> Producer:
    return Producer({**_client(settings), **PRODUCER_DEFAULTS, **overrides})


def send(producer: Producer, topic: str, **message: Any) -> None:
    """``producer.produce``, waiting while librdkafka's local queue is full instead of failing."""
    while True:
        try:
            producer.produce(topic, **message)
            return
        except BufferError:  # the local queue is full: let librdkafka deliver some
            producer.poll(0.05)


def consumer(settings: Settings, group: str, **overrides: Any) -> Consumer:
    config = {
        **_client(settings),
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    }
    return Consumer({**config, **overrides})


def partition_count(settings: Settings, topic: str) -> int:
    admin = admin_client(settings)
    return len(metadata(settings, admin, topic).topics[topic].partitions)


# What a client sees while a dead broker's partitions and group coordination move to another:
# librdkafka marks some of these retriable and not others (its answer to a watermark query).
MOVING = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR,
          KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError._WAIT_COORD,
          KafkaError.REQUEST_TIMED_OUT, KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._UNKNOWN_PARTITION,
          KafkaError.OFFSET_NOT_AVAILABLE, KafkaError.FENCED_LEADER_EPOCH, KafkaError.UNKNOWN_LEADER_EPOCH,
          KafkaError._DESTROY_BROKER,  # (a connection to the dead broker torn down under a request)
          KafkaError.UNKNOWN_TOPIC_OR_PART}  # (a topic just made, not yet known to every broker)


def moving(error: KafkaError) -> bool:
    """Whether ``error`` passes once the cluster has moved what a dead broker held."""
    return error.retriable() or error.code() in MOVING


def fenced(error: KafkaError) -> bool:
    """Whether a consumer that saw ``error`` is done for and a new one must take its place (a static
    member fenced after its group's coordinator moved, say)."""
    return error.fatal() or error.code() in (KafkaError._FATAL, KafkaError.FENCED_INSTANCE_ID)


def watermarks(reader: Consumer, tp: TopicPartition, timeout: float = 60) -> tuple[int, int]:
    """``get_watermark_offsets``, asked again while the partition's leader is moving (a broker died)."""

    def refresh(error: KafkaError) -> None:
        if error.code() == KafkaError._UNKNOWN_PARTITION:  # its metadata predates the partition
            try:
                reader.list_topics(tp.topic, timeout=5)
            except KafkaException:
                pass

    return while_moving(lambda wait: reader.get_watermark_offsets(tp, timeout=wait), timeout, refresh)


def committed(reader: Consumer, partitions: list[TopicPartition], timeout: float = 60) -> list[TopicPartition]:
    """The group's committed offsets, asked again while its coordinator moves (NOT_COORDINATOR and
    the like: a broker died, or a new group's coordinator is loading). A worker asks inside its
    rebalance callbacks, where an error would end the worker."""
    return while_moving(lambda wait: reader.committed(partitions, timeout=wait), timeout)


def while_moving(ask: Callable[[float], T], timeout: float,
                 between: Callable[[KafkaError], None] = lambda error: None) -> T:
    """``ask(wait)`` until it answers, again after each error that passes once the cluster has moved
    what a dead broker held (``between`` sees the error first), for up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return ask(min(5.0, max(deadline - time.monotonic(), 1.0)))
        except KafkaException as exc:
            if not moving(exc.args[0]) or time.monotonic() >= deadline:
                raise
            between(exc.args[0])
            time.sleep(0.2)


def arrived(reader: Consumer, most: int, wait: float) -> list[Message]:
    """One message (waiting up to ``wait`` seconds for it), then whatever has arrived with it.

    ``consume(n, timeout)`` alone waits the whole timeout unless n messages come: at the end of a
    short range, every call would.
    """
    messages = reader.consume(1, timeout=wait)
    return messages + reader.consume(most - 1, timeout=0) if messages else messages


def read_range(settings: Settings, topic: str, partition: int, start: int, end: int,
               most: int = 10_000) -> Iterator[list[Message]]:
    """Messages of one partition with offsets in [start, end), in order, as they arrive: lists of
    up to ``most`` (what its readers write at once)."""
    if start >= end:
        return
    reader = consumer(settings, group=f"{settings.app_id}-replay")
    tp = TopicPartition(topic, partition)
    try:
        reader.assign([TopicPartition(topic, partition, start)])
        while reader.position([tp])[0].offset < end:
            if batch := [m for m in arrived(reader, most, 1.0) if m.error() is None and m.offset() < end]:
                yield batch
    finally:
        reader.close()


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """Each partition's end offset (the offset the next message will get)."""
    reader = consumer(settings, group=f"{settings.app_id}-watermarks")
    try:
        count = partition_count(settings, topic)
        return {p: watermarks(reader, TopicPartition(topic, p))[1] for p in range(count)}
    finally:
        reader.close()


def lag(settings: Settings, group: str, topic: str) -> int:
    """Messages of ``topic`` that ``group`` has not committed yet (an empty partition counts 0)."""
    reader = consumer(settings, group=group)
    try:
        partitions = [TopicPartition(topic, p) for p in range(partition_count(settings, topic))]
        ends = [watermarks(reader, tp)[1] for tp in partitions]
        return sum(end - max(tp.offset, 0) for tp, end in zip(committed(reader, partitions), ends))
    finally:
        reader.close()


def min_insync(replicas: int) -> int:
    """The replicas a write needs by default: two from three replicas on (one lost broker is survived
    without losing an acknowledged write), else one."""
    return 2 if replicas >= 3 else 1


def _quoted(value: str) -> str:
    """A value inside a JAAS line's double quotes."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def create_topics(settings: Settings, topics: Mapping[str, int], config: Mapping[str, str] | None = None) -> None:
    """Create each topic with its partition count and replicas; a topic that exists already is left
    as it is (its partition count too: the caller checks it if it matters), with one warning if it
    has fewer replicas than configured."""
    admin = admin_client(settings)
    brokers = len(metadata(settings, admin).brokers)
    replicas = min(settings.replication, brokers)
    insync = settings.min_insync or min_insync(replicas)
    wanted, deadline = dict(topics), time.monotonic() + 60
    existed: set[str] = set()
    while wanted:  # asked again while a broker's death moves the controller or a leader
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=count, replication_factor=replicas,
                      config={"min.insync.replicas": str(min(insync, replicas)), **(config or {})})
             for name, count in wanted.items()],
            operation_timeout=30,
        )
        for name, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    if not moving(exc.args[0]) or time.monotonic() > deadline:
                        raise
                    continue  # asked again
                existed.add(name)
            del wanted[name]
        if wanted:
            time.sleep(0.5)
    # Created is not yet served: wait until the broker's metadata has every partition.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = metadata(settings, admin, timeout=10).topics
        if all(name in found and found[name].error is None
               and (name in existed or len(found[name].partitions) == count) for name, count in topics.items()):
            _warn_underreplicated(settings, {name: found[name] for name in topics}, replicas)
            return
        time.sleep(0.05)
    raise KafkaException(f"topics {sorted(topics)} did not appear in the broker's metadata within 30 s")


def _warn_underreplicated(settings: Settings, found: Mapping[str, Any], replicas: int) -> None:
    """One line for the topics that exist with fewer replicas than this cluster should give them."""
    short = {name: min(len(p.replicas) for p in meta.partitions.values()) for name, meta in found.items()}
    short = {name: count for name, count in short.items() if count < replicas}
    if short and (settings.bootstrap, tuple(sorted(short))) not in _WARNED:
        _WARNED.add((settings.bootstrap, tuple(sorted(short))))
        logging.getLogger("velox.kafka").warning(
            "%d topic(s) have fewer than %d replicas (VELOX_REPLICATION, at most the brokers there are): %s; "
            "losing a broker can lose their data (kafka-reassign-partitions adds replicas)", len(short), replicas,
            ", ".join(f"{name} ({count})" for name, count in sorted(short.items())))


_WARNED: set[tuple[str, tuple[str, ...]]] = set()


class CompactedReader:
    """A compacted one-partition topic read as a table: the records there now, then each new one.

    ``model-versions`` and ``owners`` are read this way by every process; no group offsets are
    committed, each reader starts from the beginning.
    """

    def __init__(self, settings: Settings, topic: str) -> None:
        self.tp = TopicPartition(topic, 0)
        self.reader = consumer(settings, group=f"{settings.app_id}-reader-{uuid.uuid4().hex[:8]}")
        low, self.high = watermarks(self.reader, self.tp)
        self.reader.assign([TopicPartition(topic, 0, low)])

    def existing(self) -> Iterator[Message]:
        """The records written before this reader started."""
        while self.high > 0 and self.reader.position([self.tp])[0].offset < self.high:
            yield from self._read(1.0)

    def new(self) -> list[Message]:
        """Records that arrived since the last call, without waiting."""
        return self._read(0)

    def _read(self, timeout: float) -> list[Message]:
        return [m for m in arrived(self.reader, 100, timeout) if m.error() is None]

    def close(self) -> None:
        self.reader.close()


def merged(rows: Mapping[str, T], messages: Iterable[Message], decode: Callable[[bytes], T]) -> dict[str, T]:
    """A copy of ``rows`` with the messages applied: the latest value per key, a null value deletes."""
    result = dict(rows)
    for message in messages:
        key, value = message.key().decode(), message.value()
        if value is None:
            result.pop(key, None)
        else:
            result[key] = decode(value)
    return result


def read_table(settings: Settings, topic: str, decode: Callable[[bytes], T]) -> dict[str, T]:
    """A compacted topic as a dict, as it is now (``FollowedTable`` keeps one current)."""
    reader = CompactedReader(settings, topic)
    try:
        return merged({}, reader.existing(), decode)
    finally:
        reader.close()


class FollowedTable(Generic[T]):
    """A compacted topic as a dict (key → decoded value, a null value deletes), kept current by a thread.

    ``changes`` counts the updates, so a reader can cache what it derives from ``rows``.
    """

    def __init__(self, settings: Settings, topic: str, decode: Callable[[bytes], T], interval: float = 0.1) -> None:
        self.decode = decode
        self.reader = CompactedReader(settings, topic)
        self.rows: dict[str, T] = {}
        self.changes = 0
        self._take(self.reader.existing())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, args=(interval,), name=f"velox-{topic}", daemon=True)
        self._thread.start()

    def _take(self, messages: Iterable[Message]) -> None:
        self.rows = merged(self.rows, messages, self.decode)  # readers see the old table or the new, never half
        self.changes += 1

    def _follow(self, interval: float) -> None:
        while not self._stop.wait(interval):
            if messages := self.reader.new():
                self._take(messages)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.reader.close()
