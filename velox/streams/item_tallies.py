"""The item corrections' totals a worker keeps for its partitions, published exactly once on ``item-corrections``.

The worker decodes every event anyway, so it counts the corrections' sufficient statistics
(``velox.model.corrections``): per owned partition, per item, Σ residual, Σ residual² and the
count of the events it counts (valid, in their home partition: ``observation.counted``'s rule),
the residual against the version the PARTITION is on. A partition's ``Tally`` counts exactly its
events in ``[training_end[p], through)``: an event below ``through`` is a replay and is skipped.

Exactly once without a transaction: at each checkpoint (``velox.streams.checkpoint``, step 1)
each partition whose totals changed sends ONE message (in chunks below Kafka's size limit) with
the changed items' CUMULATIVE totals and ``through``, to the topic's partition of its number;
it is flushed with the changelog, before the source offsets are committed, so ``through`` is at
least the committed offset: after ``kill -9`` the events replayed below it are skipped, and a
message sent twice holds the same totals. When the items sent since the last snapshot outnumber
the partition's items (or ``SNAPSHOT_AGE`` has passed), the message holds every item instead (a
snapshot); each message carries where the latest complete snapshot starts, so a reader of the
topic (``velox.control.item_corrections``, and ``restore`` here) reads from there to the end:
at most about twice the totals' size, whatever the log's length.

A worker taking a partition restores its totals on the partition's version from the topic
before applying events, and sends a snapshot at its first checkpoint (the start a reader finds
is then recent). When the topic has none (a partition new to the topic, or a snapshot gone past
the topic's retention), the totals are counted again from the log, from the training end to the
worker's position: once, as a swap's replay is. A swap counts the new version's totals in its
replay (``velox.streams.swap``) and sends them as a snapshot before the partition's version
marker is written, so a partition on a version always has that version's totals on the topic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import numpy as np
from confluent_kafka import KafkaError, Message, TopicPartition

from velox.control import item_corrections
from velox.errors import InvalidItemTotals
from velox.kafka import clients, positions
from velox.model.batch_scores import predict_many
from velox.model.corrections import ItemCorrections
from velox.model.learner import Event
from velox.model.version import ModelVersion
from velox.schemas import item_totals, observation
from velox.schemas.item_totals import ItemTotalsMessage
from velox.settings import Settings
from velox.streams.changelog import Changelog

log = logging.getLogger("velox.worker")

SNAPSHOT_AGE = 6 * 3600.0  # seconds: a snapshot at least this often, well within the topic's retention


class Tally:
    """One partition's item totals on one version: its counted events in ``[start, through)``."""

    def __init__(self, version: ModelVersion, partition: int, start: int, through: int | None = None,
                 snapshot: int = -1) -> None:
        self.seen = ItemCorrections(version)
        self.partition, self.start = partition, start
        self.through = start if through is None else max(through, start)
        self.snapshot = snapshot  # the topic offset where the latest complete snapshot starts
        self.changed: set[int] = set()  # slots changed since the last message
        self.full_due = True  # the next message is a snapshot
        self.sent_since = 0  # items sent since the last snapshot
        self.snapshot_at = time.monotonic()

    def count(self, events: Sequence[Event], names: Mapping[int, str]) -> None:
        """Count the events at or past ``through`` and the start (in offset order, one partition's)."""
        fresh = self.fresh(events)
        self.tally(fresh, residuals(self.seen.version, fresh), names)

    def fresh(self, events: Sequence[Event]) -> list[Event]:
        """The events at or past ``through`` (in offset order, one partition's), ``through`` moved past them."""
        if not events or events[-1].offset < self.through:
            return []
        fresh = [e for e in events if e.offset >= self.through]
        self.through = fresh[-1].offset + 1
        return fresh

    def tally(self, fresh: Sequence[Event], residuals: np.ndarray, names: Mapping[int, str]) -> None:
        """Add ``fresh`` events' residuals against the tally's version."""
        if fresh:
            slots = self.seen.tally(np.fromiter((e.item for e in fresh), np.int64, len(fresh)), residuals,
                                    {e.item: names[e.item] for e in fresh if e.item in names} if names else None)
            self.changed.update(slots.tolist())

    def due(self) -> bool:
        return self.full_due or bool(self.changed)

    def message(self) -> tuple[ItemTotalsMessage, bool]:
        """What the next checkpoint sends, and whether it is a snapshot; the changes are then taken."""
        full = (self.full_due or self.sent_since + len(self.changed) > len(self.seen)
                or time.monotonic() - self.snapshot_at > SNAPSHOT_AGE)
        slots = None if full else np.fromiter(self.changed, np.int64, len(self.changed))
        codes, sums, squares, counts = self.seen.totals(slots)
        names = {code: self.seen.names[code] for code in codes[codes < 0].tolist() if code in self.seen.names}
        self.changed.clear()
        if full:
            self.full_due, self.sent_since, self.snapshot_at = False, 0, time.monotonic()
        else:
            self.sent_since += len(codes)
        return ItemTotalsMessage(self.seen.version.id, self.partition, self.start, self.through, self.snapshot, full,
                                 codes, sums, squares, counts.astype(np.int64), names), full


def residuals(version: ModelVersion, events: Sequence[Event]) -> np.ndarray:
    """Each event's score less the version's prediction (the user at their prior)."""
    return (np.fromiter((e.score for e in events), np.float64, len(events))
            - predict_many(version, np.fromiter((e.user for e in events), np.int64, len(events)),
                           np.fromiter((e.item for e in events), np.int64, len(events))))


class Tallies:
    """The worker's tallies, one per owned partition, sent through the changelog's producer."""

    def __init__(self, settings: Settings, changelog: Changelog) -> None:
        self.settings, self.changelog = settings, changelog
        self.topic = item_corrections.topic(settings)
        self.parts: dict[int, Tally] = {}

    def count(self, batch: Mapping[int, Sequence[Event]], names: Mapping[int, str]) -> None:
        """A batch's events of each partition; the residuals of the partitions on one version
        scored together (per partition, the scoring's fixed cost was most of a small batch's)."""
        fresh = [(tally, tally.fresh(events)) for p, events in batch.items() if (tally := self.parts.get(p)) is not None]
        by_version: dict[int, list[tuple[Tally, list[Event]]]] = {}
        for tally, events in fresh:
            if events:
                by_version.setdefault(id(tally.seen.version), []).append((tally, events))
        for group in by_version.values():
            every = [e for _, events in group for e in events]
            scored = residuals(group[0][0].seen.version, every)
            start = 0
            for tally, events in group:
                tally.tally(events, scored[start:start + len(events)], names)
                start += len(events)

    def publish(self) -> None:
        """Step 1 of a checkpoint, before the changelog's flush: one message per partition with changes."""
        for tally in self.parts.values():
            if tally.due():
                self._send(tally)

    def switched(self, tally: Tally, through: int) -> None:
        """A swap's partition is on ``tally``'s version, every event below ``through`` counted:
        its snapshot is sent now (the swap's flush delivers it before the version marker)."""
        before = self.parts.get(tally.partition)
        tally.snapshot = before.snapshot if before is not None else tally.snapshot
        tally.through = max(tally.through, through)
        tally.full_due = True
        self.parts[tally.partition] = tally
        self._send(tally)

    def _send(self, tally: Tally) -> None:
        message, full = tally.message()
        parts = item_totals.chunks(message)

        def delivered(error: KafkaError | None, sent: Message, first: bool = False) -> None:
            # (a failure is the changelog's: the checkpoint raises, nothing is committed)
            if error is None and first and full and self.parts.get(tally.partition) is tally:
                tally.snapshot = sent.offset()

        for at, part in enumerate(parts):
            self.changelog.send(self.topic, tally.partition, value=item_totals.encode(part),
                                after=lambda error, sent, first=at == 0: delivered(error, sent, first))

    def restore(self, version: ModelVersion, partition: int, start: int, position: int) -> None:
        """Take a partition: its totals on ``version`` from the topic, or counted from the log."""
        tally = self._read(version, partition, start)
        if tally is None:
            tally = Tally(version, partition, start)
            counted = self._recount(tally, position)
            log.info("item totals of partition %d on %s: none on %s, counted %d events of the log again",
                     partition, version.id, self.topic, counted)
        self.parts[partition] = tally

    def _read(self, version: ModelVersion, partition: int, start: int) -> Tally | None:
        """The partition's totals on ``version`` from the topic: from its latest snapshot to the end;
        None when the topic cannot give them whole."""
        reader = clients.consumer(self.settings, group=f"{self.settings.app_id}-item-totals")
        try:
            low, high = positions.watermarks(reader, TopicPartition(self.topic, partition))
        finally:
            reader.close()
        if high <= low:
            return None
        last = _last(self.settings, self.topic, partition, high)
        # -1: no snapshot was known complete when it was sent, and every message since the first is
        # there to read; an offset below the low watermark: the snapshot is past the retention.
        begin = None if last is None else low if last.snapshot == -1 and low == 0 else last.snapshot
        if begin is None or begin < low:
            return None
        tally = None
        for batch in clients.read_range(self.settings, self.topic, partition, begin, high):
            for message in batch:
                try:
                    found = item_totals.decode(message.value())
                except InvalidItemTotals as exc:
                    log.warning("skipped %s[%d]@%d: %s", self.topic, partition, message.offset(), exc)
                    continue
                if found.version != version.id or found.partition != partition:
                    continue
                if tally is None:
                    tally = Tally(version, partition, found.start)
                tally.seen.assign(found.codes, found.sums, found.squares, found.counts.astype(np.float64), found.names)
                tally.through, tally.snapshot = max(tally.through, found.through), found.snapshot
        if tally is not None and tally.start != start:
            log.warning("item totals of partition %d on %s start at %d, the version's training end at %d: "
                        "counted again", partition, version.id, tally.start, start)
            return None
        return tally

    def _recount(self, tally: Tally, position: int) -> int:
        """Count the partition's events from the tally's start to ``position`` (the worker's)."""
        counted = 0
        source = self.settings.topic("observations")
        for batch in clients.read_range(self.settings, source, tally.partition, tally.start, position):
            events, names = [], {}
            for message in batch:
                seen = observation.counted(message.key(), message.value(), tally.partition, self.settings.partitions)
                if seen is not None:
                    events.append(Event(seen.key, seen.user_code, seen.item_code, seen.score, message.offset()))
                    if seen.item_code < 0:
                        names[seen.item_code] = str(seen.item)
            tally.count(events, names)
            counted += len(events)
        tally.through = max(tally.through, position)
        return counted

    def forget(self, partitions: Sequence[int]) -> None:
        for partition in partitions:
            self.parts.pop(partition, None)


def _last(settings: Settings, name: str, partition: int, high: int) -> ItemTotalsMessage | None:
    """The partition's last message, decoded (None if it cannot be)."""
    for batch in clients.read_range(settings, name, partition, high - 1, high):
        for message in batch:
            try:
                return item_totals.decode(message.value())
            except InvalidItemTotals:
                return None
    return None
