"""The offset the Faust engine commits, from Faust's bookkeeping of acked offsets and gaps.

Unit tests of ``ReadCommittedConsumer._new_offset`` on the state Faust keeps per partition; the
kill -9 tests of tests/streams/test_worker.py and tests/batch/test_retrain.py wait for the real
commits after a restart.
"""

from __future__ import annotations

from collections import defaultdict

from faust.types import TP
from intervaltree import IntervalTree

from velox.streams.faust_engine import ReadCommittedConsumer

TOPIC = TP("observations", 0)


def consumer(committed: int, acked: list[int], gaps: list[tuple[int, int]]) -> ReadCommittedConsumer:
    """The consumer's bookkeeping alone: ``_new_offset`` reads nothing else."""
    made = ReadCommittedConsumer.__new__(ReadCommittedConsumer)
    made._committed_offset = defaultdict(lambda: None, {TOPIC: committed})
    made._acked = defaultdict(list, {TOPIC: list(acked)})
    made._acked_index = defaultdict(set, {TOPIC: set(acked)})
    made._gap = defaultdict(IntervalTree, {TOPIC: IntervalTree.from_tuples(gaps)})
    return made


def test_a_gap_over_offsets_acked_already_commits_the_whole_run_at_once() -> None:
    # After a restart: 10..19 delivered and acked, then the seek back to 10 makes the next
    # message (20) record 11..20 as a gap. Faust's own merge repeats 11..19 and commits up to 12.
    made = consumer(committed=10, acked=list(range(10, 20)), gaps=[(11, 21)])
    assert made._new_offset(TOPIC) == 20
    assert made._acked[TOPIC] == [] and [(gap.begin, gap.end) for gap in made._gap[TOPIC]] == [(20, 21)]


def test_a_gap_counts_only_up_to_the_highest_acked_offset() -> None:
    # The same gap ends with message 20, which the agent has not applied yet: it is committed once
    # acked. Faust's merge counts it: its commits reach 21 with 20 unapplied (a crash then loses it).
    made = consumer(committed=10, acked=list(range(10, 20)), gaps=[(11, 21)])
    assert commit_all(made) == 20
    made._acked[TOPIC].append(20)
    assert commit_all(made) == 21


def commit_all(made: ReadCommittedConsumer) -> int:
    """Commit as Faust does, again and again, until the offset stops moving; the last committed."""
    while (offset := made._new_offset(TOPIC)) is not None and offset > made._committed_offset[TOPIC]:
        made._committed_offset[TOPIC] = offset
    return made._committed_offset[TOPIC]


def test_without_gaps_the_commit_stops_before_an_offset_not_acked() -> None:
    made = consumer(committed=10, acked=[10, 11, 13], gaps=[])
    assert made._new_offset(TOPIC) == 12
    assert made._acked[TOPIC] == [13]
