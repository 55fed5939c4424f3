"""The one settings object: read once from ``VELOX_*`` variables, overridden by flags, passed down.

Nothing else in the project reads ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from velox.errors import ConfigError


def _home() -> Path:
    return Path(os.path.expanduser("~"))


@dataclass(frozen=True)
class Settings:
    """Where Kafka is, where files go, and how topics are laid out.

    bootstrap: the Kafka bootstrap servers (``VELOX_BOOTSTRAP``). The local broker listens
        on this host and port, and its KRaft controller on the next port.
    cache: downloaded jars, kept across checkouts (``VELOX_CACHE``).
    data: broker data, logs, tables and model versions (``VELOX_DATA``).
    partitions: partitions of the ``observations`` topic (``VELOX_PARTITIONS``).
    kafka_heap: the local broker's JVM heap (``VELOX_KAFKA_HEAP``).
    """

    bootstrap: str = "127.0.0.1:9092"
    cache: Path = _home() / ".cache" / "velox"
    data: Path = _home() / ".local" / "share" / "velox"
    partitions: int = 8
    kafka_heap: str = "512m"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``VELOX_<FIELD>`` variables, then apply non-None overrides."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            env_name = f"VELOX_{field.name.upper()}"
            if env_name in environ:
                values[field.name] = _convert(field, env_name, environ[env_name])
        values.update({key: value for key, value in overrides.items() if value is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        host, _, port = self.bootstrap.split(",")[0].rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"bootstrap {self.bootstrap!r} is not host:port")
        if self.partitions < 1:
            raise ConfigError(f"partitions must be at least 1, got {self.partitions}")

    @property
    def broker_address(self) -> tuple[str, int]:
        """Host and port of the first bootstrap server: where the local broker listens."""
        host, _, port = self.bootstrap.split(",")[0].rpartition(":")
        return host, int(port)

    def replace(self, **changes: Any) -> Settings:
        settings = dataclasses.replace(self, **changes)
        settings.validate()
        return settings


def _convert(field: dataclasses.Field[Any], env_name: str, raw: str) -> Any:
    if field.type in ("Path", Path):
        return Path(raw).expanduser()
    if field.type in ("int", int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{env_name}={raw!r} is not an integer") from None
    return raw
