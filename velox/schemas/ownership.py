"""Who owns which partitions: the record each worker keeps on the compacted ``owners`` topic.

Keyed by worker id. A worker announces its partitions once it has recovered them (so an edge
never reads a half-recovered table), and again when it loses them or stops. Where two records
claim a partition (a worker killed without a word, its partitions taken over), the later wins.
"""

from __future__ import annotations

import msgspec

from velox.schemas import records


class Ownership(msgspec.Struct, frozen=True):
    worker: str
    edge: str  # base URL of the edge beside the worker, e.g. http://127.0.0.1:8000
    partitions: list[int]
    at: float  # when the worker announced it (seconds since the epoch)


encode = records.encode
decode = records.decoder(Ownership)


def owners(claims: list[Ownership]) -> dict[int, Ownership]:
    """Each partition's owner: among the records claiming it, the latest.

    >>> a = Ownership("a", "http://a", [0, 1], at=1.0)
    >>> b = Ownership("b", "http://b", [1], at=2.0)
    >>> {p: o.worker for p, o in sorted(owners([a, b]).items())}
    {0: 'a', 1: 'b'}
    """
    found: dict[int, Ownership] = {}
    for claim in sorted(claims, key=lambda c: c.at):
        for partition in claim.partitions:
            found[partition] = claim
    return found
