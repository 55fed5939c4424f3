"""How every Kafka client of Velox is configured: servers, credentials, logging.

Every client gets the properties of ``VELOX_KAFKA_CONFIG`` (credentials, TLS), and Spark's
Kafka source and Faust the same, named the Java client's or aiokafka's way (``java_options``,
``faust_credentials``). Producers are idempotent with ``acks=all`` and use the murmur2
partitioner, the same hash as the Java client, so what they produce lands in its user's home
partition (``velox.schemas.partitioning``).

The clients log through ``velox.kafka.client`` instead of librdkafka's own lines on stderr:
what they report at INFO or below, and conditions they retry by themselves (a coordinator still
loading at a broker's start), at DEBUG; a warning or error once a minute at most, however often
librdkafka repeats it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError

from velox.errors import ConfigError
from velox.settings import Settings

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



def client_config(settings: Settings) -> dict[str, Any]:
    """What every client gets: the bootstrap servers, ``VELOX_KAFKA_CONFIG``'s properties, our logger
    and the error callback that keeps the last refusal (``clients.metadata`` names it)."""
    return {"bootstrap.servers": settings.bootstrap, **properties(settings.kafka_config), "logger": CLIENT_LOG,
            "error_cb": _remember}


REFUSALS = {KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError.SASL_AUTHENTICATION_FAILED}
last_refusal: dict[str, str] = {}  # "last": why a cluster refused us, the last time one did


def _remember(error: KafkaError) -> None:
    if error.code() in REFUSALS:
        last_refusal["last"] = error.str()



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



def _quoted(value: str) -> str:
    """A value inside a JAAS line's double quotes."""
    return value.replace("\\", "\\\\").replace('"', '\\"')




PRODUCER_DEFAULTS: Mapping[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "partitioner": "murmur2_random",
    "linger.ms": 5,
    "compression.type": "lz4",
}
