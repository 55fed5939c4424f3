"""The items topic's checker: what the readers skip goes to items-dlq once, byte for byte, with why."""

from __future__ import annotations

import time
import uuid

from tests.streams.harness import produce, read_all
from velox.control import items
from velox.schemas import item_attributes
from velox.schemas.dead_letter import DeadLetter
from velox.settings import Settings


def checked(checker: items.Checker, letters: int, timeout: float = 60) -> None:
    """Until ``checker`` has sent ``letters`` dead letters (it joins its group first)."""
    deadline, sent = time.monotonic() + timeout, 0
    while sent < letters:
        assert time.monotonic() < deadline, f"{sent} of {letters} dead letters sent in {timeout} s"
        sent += checker.check(timeout=0.5)
    assert sent == letters


def test_attributes_the_readers_skip_go_to_items_dlq_once_with_the_reason(settings: Settings) -> None:
    own = settings.replace(namespace=f"i{uuid.uuid4().hex[:8]}-")
    bad = b'{"genres": ["Drama", 7]}'
    checker = items.Checker(own)
    try:
        produce(own, items.topic(own), [(b"1", item_attributes.encode({"genres": ["Drama"], "year": 1995})),
                                        (b"2", bad), (b"3", b"not json"), (b"4", None)])
        checked(checker, 2)
        assert checker.check(timeout=1) == 0
    finally:
        checker.close()
    restarted = items.Checker(own)  # the controller again: its group's offsets were committed
    try:
        produce(own, items.topic(own), [(b"5", b"[1, 2]")])
        checked(restarted, 1)
    finally:
        restarted.close()
    letters = read_all(own, items.dead_letters(own))
    assert [(m.key(), m.value()) for m in letters] == [(b"2", bad), (b"3", b"not json"), (b"5", b"[1, 2]")]
    why = [DeadLetter.from_headers(m.headers()) for m in letters]
    assert [(w.field, w.topic, w.offset) for w in why] == [("genres", items.topic(own), 1), ("", items.topic(own), 2),
                                                           ("", items.topic(own), 4)]
    assert "a list holds strings only" in why[0].reason and "JSON" in why[1].reason
