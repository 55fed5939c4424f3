"""Errors shared by every part of Velox.

    VeloxError
    ├── ConfigError        a setting or flag has a value we cannot use
    ├── KafkaUnreachable   the cluster did not answer, or refused our credentials
    ├── BrokerError        the local Kafka broker could not be started or stopped
    ├── JarFetchError      Maven could not resolve a set of jars
    ├── InvalidObservation an observation event failed to decode or validate
    ├── InvalidAttributes  an item's attributes failed to decode or validate
    ├── InvalidUserState   stored bytes are not a user-state record this code can read
    ├── UnknownVersion     the model store holds no complete version of that id
    ├── UnknownApp         no application of that name is registered
    ├── ChangelogFailed    the worker's changelog writes were not acknowledged
    ├── RetrainBusy        another retrain job holds the lock
    └── IdCollision        two string ids hash to one code (velox.schemas.ids)
"""


class VeloxError(Exception):
    """Base of every error Velox raises on purpose."""


class ConfigError(VeloxError):
    """A setting has a value we cannot use; the message names the setting and the value."""


class KafkaUnreachable(VeloxError):
    """The cluster did not answer, or refused these credentials: said with the broker and the cause."""


class BrokerError(VeloxError):
    """The local broker failed; the message gives the reason and the log to read."""


class JarFetchError(VeloxError):
    """Maven failed; the message ends with Maven's own last lines."""


class InvalidObservation(VeloxError):
    """An observation event is not what the schema says; ``field`` names the culprit ("" for the whole event)."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)


class InvalidAttributes(VeloxError):
    """An item's attributes are not what ``velox.schemas.item_attributes`` says; ``field`` names the
    culprit ("" for the whole record)."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)


class InvalidUserState(VeloxError):
    """Stored bytes are not a user-state record this code can read (another format version?)."""


class InvalidItemTotals(VeloxError):
    """An ``item-corrections`` message this code cannot read: a reader skips it, with this reason."""


class UnknownVersion(VeloxError):
    """The model store holds no complete version of that id."""


class ChangelogFailed(VeloxError):
    """A changelog record was not acknowledged: committing now could lose an update; the worker stops."""


class RetrainBusy(VeloxError):
    """Another retrain holds the lock; this one did nothing."""


class UnknownApp(VeloxError):
    """No application of that name is registered."""


class IdCollision(VeloxError):
    """Two string ids share a 64-bit code; the retrain refuses to train them as one (rename one)."""
