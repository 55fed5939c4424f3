"""The items' attributes as the edge follows them (the ``items`` topic, ``velox.control.items``)."""

from __future__ import annotations

from velox.control import items
from velox.schemas.item_attributes import Attributes
from velox.settings import Settings


class ItemContent:
    """Every item's attributes, kept current by a thread."""

    def __init__(self, settings: Settings) -> None:
        self.table = items.follow(settings)

    def attributes(self, item: int | str) -> Attributes | None:
        """The item's attributes as the topic says now (keys are the ids' text)."""
        return self.table.rows.get(str(item))

    def close(self) -> None:
        self.table.close()
