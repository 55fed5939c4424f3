"""A worker's commit of source offsets, in order, so that one never runs ahead of the changelog.

1. Flush: each partition's item totals that changed are sent (``velox.streams.item_tallies``), then
   every changelog record, dead letter and item-totals message sent so far is acknowledged
   (``flush_changelog``): the totals' ``through`` is never below the offsets committed next.
2. Remember: each partition's DB stores the last changelog offset it reflects, so a restart's
   recovery reads only the changelog after it (``flush_changelog`` too).
3. Commit the source offsets: the kafka engine commits its group's offsets, inside the move
   transaction when events were moved since the last commit (``commit_offsets``); the faust
   engine commits the move transaction with the moves' own progress, then Faust commits its
   offsets itself (``velox.streams.faust_engine``).

The kafka engine's periodic checkpoint does not stop the stream for the acknowledgements: it
takes step 1 and a mark of what was sent (``begin``), goes on applying events, and takes steps 2
and 3 once everything before the mark is acknowledged (``Changelog.acknowledged``), committing
the offsets it had when it began, asynchronously. A flush, then a commit the consumer waited for,
every second, stalled every event that arrived meanwhile (bench/stream.py's latency run measures
it). A revoke, a stop and a move transaction take the three steps at once.

Every record carries its user's source offset, so events replayed after ``kill -9`` (those past
the last commit) change nothing: exactly once without a transaction on the local DB; the item
totals skip them by their ``through``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum

from confluent_kafka import Consumer, KafkaException, TopicPartition

from velox.kafka import retry
from velox.state.partition_store import PartitionStore
from velox.streams.changelog import Changelog
from velox.streams.item_tallies import Tallies
from velox.streams.moves import Mover

log = logging.getLogger("velox.worker")


class Outcome(Enum):
    COMMITTED = "committed"
    LATER = "later"  # not taken now (the group's coordinator is moving); asked again next time
    FENCED = "fenced"  # the consumer is done for: a new one takes its place
    REWIND = "rewind"  # the move transaction was aborted: read the partitions again from their commits


@dataclass
class Checkpoint:
    """One begun: the source offsets it commits once the messages sent before ``mark`` are acknowledged."""

    offsets: list[TopicPartition]
    mark: dict[tuple[str, int], int]


def begin(changelog: Changelog, tallies: Tallies, offsets: list[TopicPartition]) -> Checkpoint:
    """Step 1 without waiting: the item totals sent; the rest once ``changelog.acknowledged(mark)``."""
    tallies.publish()
    return Checkpoint(offsets, changelog.mark())


def flush_changelog(changelog: Changelog, stores: dict[int, PartitionStore], tallies: Tallies) -> None:
    """Steps 1 and 2 at once: the item totals sent, the changelog acknowledged, each DB remembers how far."""
    tallies.publish()
    changelog.flush()
    remember(changelog, stores)


def remember(changelog: Changelog, stores: dict[int, PartitionStore]) -> None:
    """Step 2: each DB remembers the last changelog offset acknowledged (its writes preceded the sends)."""
    for partition, offset in changelog.delivered.items():
        if partition in stores:
            stores[partition].remember_changelog_offset(offset)


def commit_offsets(consumer: Consumer, mover: Mover, offsets: list[TopicPartition],
                   asynchronous: bool = False) -> Outcome:
    """Step 3 of the kafka engine: the source offsets, with the moved events if there are any.

    An asynchronous commit's failure comes to the consumer's ``on_commit`` callback instead."""
    if mover.opened is None:
        try:
            consumer.commit(offsets=offsets, asynchronous=asynchronous)
        except KafkaException as exc:
            if retry.fenced(exc.args[0]):
                return Outcome.FENCED
            if not retry.moving(exc.args[0]):
                raise
            # The group's coordinator is moving (its broker died): the states hold their source
            # offsets, so a commit that comes later, or never, only means events replayed as no-ops.
            log.warning("commit not taken (%s); tried again at the next commit", exc.args[0].str())
            return Outcome.LATER
        return Outcome.COMMITTED
    try:
        mover.commit(consumer, offsets)
    except KafkaException as exc:
        if not exc.args[0].txn_requires_abort():
            raise
        log.warning("move transaction failed (%s): aborted, its events are read and moved again", exc)
        mover.abort()
        return Outcome.REWIND
    return Outcome.COMMITTED
