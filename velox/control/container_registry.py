"""The compacted ``containers`` topic: which container replicas are alive, where, and which version each container serves.

Replicas register and heartbeat (``Announcer``); ``velox container set-version`` chooses the
version edges route to (``set_version``, rollback included); edges follow the topic
(``follow``, ``serving``) and count a replica dead once its heartbeat is older than ``DEAD_AFTER``.
"""

from __future__ import annotations

import time

from velox.control import compacted
from velox.errors import ConfigError
from velox.kafka import clients, topic_admin
from velox.schemas import container_rpc
from velox.schemas.container_rpc import Registration, Replica, Selected
from velox.settings import Settings

DEAD_AFTER = 1.0  # seconds without a heartbeat (four missed)


def topic(settings: Settings) -> str:
    return settings.topic("containers")


def ensure_topic(settings: Settings) -> None:
    topic_admin.create_topics(settings, {topic(settings): 1}, {"cleanup.policy": "compact"})


def _key(replica: Replica) -> bytes:
    return f"{replica.name}/{replica.version}/{replica.replica}".encode()


class Announcer:
    """A replica's registration on the topic, re-sent as its heartbeat."""

    def __init__(self, settings: Settings) -> None:
        ensure_topic(settings)
        self.settings = settings
        self.producer = clients.producer(settings, **{"linger.ms": 0})

    def register(self, replica: Replica) -> None:
        self.producer.produce(topic(self.settings), key=_key(replica), value=container_rpc.encode(replica))
        self.producer.poll(0)

    def remove(self, replica: Replica) -> None:
        self.producer.produce(topic(self.settings), key=_key(replica), value=None)
        self.producer.flush(10)


def current(settings: Settings) -> dict[str, Registration]:
    ensure_topic(settings)
    return compacted.read_table(settings, topic(settings), container_rpc.decode_registration)


def set_version(settings: Settings, name: str, version: str) -> Selected:
    """Route ``name``'s requests to ``version`` (a rollback is the same), which a live replica must serve."""
    versions = sorted({r.version for r in live(current(settings), time.time()) if r.name == name})
    if version not in versions:
        raise ConfigError(f"container {name!r} has no live replica of version {version!r} "
                          f"(live versions: {', '.join(versions) or 'none'}); start one with velox container run")
    selected = Selected(name, version)
    producer = clients.producer(settings)
    producer.produce(topic(settings), key=name.encode(), value=container_rpc.encode(selected))
    if producer.flush(30) != 0:
        raise TimeoutError(f"the version choice of container {name!r} was not acknowledged within 30 s")
    return selected


def live(rows: dict[str, Registration], now: float) -> list[Replica]:
    """Every replica whose heartbeat is fresh."""
    return [r for r in rows.values() if isinstance(r, Replica) and now - r.heartbeat_at <= DEAD_AFTER]


def _order(version: str) -> tuple[int, int | str]:
    """Versions compare as numbers when they are numbers: "10" after "9"."""
    return (1, int(version)) if version.isdigit() else (0, version)


def serving(rows: dict[str, Registration], name: str, now: float) -> tuple[str, list[Replica]] | None:
    """The version ``name`` serves (the one set, else the highest live) and its live replicas; None if none is live."""
    replicas_of = [r for r in live(rows, now) if r.name == name]
    selected = rows.get(name)
    version = (selected.version if isinstance(selected, Selected)
               else max((r.version for r in replicas_of), key=_order, default=None))
    replicas = [r for r in replicas_of if r.version == version]
    return (version, replicas) if version is not None and replicas else None


def names(rows: dict[str, Registration], now: float) -> list[str]:
    """The containers with a live replica."""
    return sorted({r.name for r in live(rows, now)})


def follow(settings: Settings) -> compacted.FollowedTable[Registration]:
    ensure_topic(settings)
    return compacted.FollowedTable(settings, topic(settings), container_rpc.decode_registration)
