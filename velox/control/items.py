"""The ``items`` topic (compacted, keyed by item id): each item's attributes, as
``velox.schemas.item_attributes`` says.

``velox load items``, the edge's ``POST /v1/items/{id}`` and anyone's producer write it; the
retrain reads it to learn its content model (``velox.model.content``) and every edge follows it
(``velox.serving.item_content``) to score the items a version did not train on by what they are.
A record a reader cannot use (someone else's producer: ours refuse bad attributes with the field
named) is skipped with a warning, as if absent, and sent once to ``items-dlq`` byte for byte with
the reason (``Checker``, which the retrain controller runs), as a bad event goes to
``observations-dlq``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from velox.control import compacted
from velox.errors import InvalidAttributes
from velox.kafka import clients, topic_admin
from velox.schemas import ids, item_attributes
from velox.schemas.dead_letter import DeadLetter
from velox.schemas.item_attributes import Attributes
from velox.settings import Settings

log = logging.getLogger("velox.control.items")


def topic(settings: Settings) -> str:
    return settings.topic("items")


def dead_letters(settings: Settings) -> str:
    return settings.topic("items-dlq")


def ensure_topic(settings: Settings) -> None:
    topic_admin.create_topics(settings, {topic(settings): 1}, {"cleanup.policy": "compact"})


def usable(data: bytes) -> Attributes | None:
    """A record's attributes, None (with a warning) if it breaks the schema."""
    try:
        return item_attributes.decode(data)
    except InvalidAttributes as exc:
        log.warning("an item's attributes on the items topic skipped: %s", exc)
        return None


def by_code(rows: dict[str, Attributes]) -> dict[int, Attributes]:
    """The table's rows by item code (what a version's rows are looked up by)."""
    return {ids.code(ids.given(key)): attributes for key, attributes in rows.items()}


def current(settings: Settings) -> dict[str, Attributes]:
    """Every item's attributes, by item id (as the key's text), as the topic says now."""
    ensure_topic(settings)
    return compacted.read_table(settings, topic(settings), usable)


def follow(settings: Settings) -> compacted.FollowedTable[Attributes]:
    """Every item's attributes by item id, kept current."""
    ensure_topic(settings)
    return compacted.FollowedTable(settings, topic(settings), usable)


def save(settings: Settings, rows: Iterable[tuple[int | str, Attributes | None]]) -> int:
    """Write items' attributes (None: delete an item's), acknowledged; how many were written."""
    ensure_topic(settings)
    producer = clients.producer(settings)
    count = 0
    with clients.acknowledged(producer, "items' attributes") as on_delivery:
        for item, attributes in rows:
            clients.send(producer, topic(settings), key=ids.key(item),
                         value=None if attributes is None else item_attributes.encode(attributes),
                         on_delivery=on_delivery)
            count += 1
    return count


class Checker:
    """Reads every record of ``items`` once, in a consumer group of its own, and sends each one the
    readers skip to ``items-dlq``: the original key and value, the reason, field and source in the
    headers (``velox.schemas.dead_letter``). Offsets are committed after the broker acknowledged
    the letters: at least once (a controller killed between the two sends those letters again)."""

    def __init__(self, settings: Settings) -> None:
        ensure_topic(settings)
        self.dead_letters = dead_letters(settings)
        topic_admin.create_topics(settings, {self.dead_letters: 1})
        self.consumer = clients.consumer(settings, group=f"{settings.app_id}-items-check")
        self.consumer.subscribe([topic(settings)])
        self.producer = clients.producer(settings)

    def check(self, timeout: float = 0.0) -> int:
        """Check what came since the last call (waiting up to ``timeout`` for it); the letters sent."""
        messages = [m for m in self.consumer.consume(1000, timeout) if m.error() is None]
        sent = 0
        with clients.acknowledged(self.producer, "items' dead letters") as on_delivery:
            for message in messages:
                if message.value() is None:  # an item deleted
                    continue
                try:
                    item_attributes.decode(message.value())
                except InvalidAttributes as exc:
                    letter = DeadLetter(str(exc), exc.field, message.topic(), message.partition(), message.offset())
                    clients.send(self.producer, self.dead_letters, key=message.key(), value=message.value(),
                                 headers=letter.headers(), on_delivery=on_delivery)
                    log.warning("item %r's attributes sent to %s: %s", message.key(), self.dead_letters, exc)
                    sent += 1
        if messages:
            self.consumer.commit(asynchronous=False)
        return sent

    def close(self) -> None:
        self.consumer.close()
