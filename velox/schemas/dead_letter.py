"""A dead letter: a bad observation kept byte for byte, with why and where it came from.

The value and key are the original message's, untouched; Kafka headers carry the reason, the
field at fault and the source topic, partition and offset. Nothing is lost, and a fixed event
can be produced again from the dead-letter topic.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    field: str
    topic: str
    partition: int
    offset: int

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            ("velox.reason", self.reason.encode()),
            ("velox.field", self.field.encode()),
            ("velox.source.topic", self.topic.encode()),
            ("velox.source.partition", str(self.partition).encode()),
            ("velox.source.offset", str(self.offset).encode()),
        ]

    @classmethod
    def from_headers(cls, headers: list[tuple[str, bytes]]) -> DeadLetter:
        found = {name.removeprefix("velox.").replace("source.", ""): value.decode() for name, value in headers}
        return cls(found["reason"], found["field"], found["topic"], int(found["partition"]), int(found["offset"]))
