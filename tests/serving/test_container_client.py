"""The container client's pure logic: how waiting requests are shared among replicas, and the
serving version derived again exactly when it may change. (Through real replicas: test_containers.py.)"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from velox.control import container_registry as registry
from velox.schemas.container_rpc import Input, Replica
from velox.serving.container_client import Batcher, ContainerFailed, Containers, share


def replica(number: int, heartbeat_at: float) -> Replica:
    return Replica("m", "1", str(number), f"127.0.0.1:{number}", number, heartbeat_at)


def test_waiting_requests_are_shared_evenly_among_the_calls_the_replicas_have_room_for() -> None:
    assert share(128, 2, 256) == 64
    assert share(5, 2, 256) == 3  # then 2 for the other
    assert share(128, 1, 256) == 128
    assert share(128, 4, 16) == 16  # never over the batch limit
    assert share(1, 3, 256) == 1


class Stand(Containers):
    """The dispatch's logic alone: two live replicas, and calls that answer at once (or never)."""

    def __init__(self, hang: bool = False) -> None:
        self.turn, self.connections, self.hang, self.sizes = iter(range(10**9)), {}, hang, []
        self.table = SimpleNamespace(rows={}, changes=0)
        self.served = {"m": (0, float("inf"), ("1", [replica(1, time.time()), replica(2, time.time())]))}

    async def call(self, model: str, replica: Replica, inputs: list[Input]) -> list[float]:
        self.sizes.append(len(inputs))
        await (asyncio.Event().wait() if self.hang else asyncio.sleep(0))
        return [1.0] * len(inputs)


def test_two_idle_replicas_each_get_half_of_what_waits() -> None:
    """Not one call of all 100 and an idle replica: they took turns, the other always idle."""
    containers = Stand()

    async def ask() -> None:
        batcher = Batcher(containers, "m", "1")
        batcher.limit.size = 256
        await asyncio.gather(*(batcher.score(Input(n, n), 60.0) for n in range(100)))

    asyncio.run(ask())
    assert containers.sizes == [50, 50]


def test_each_request_is_answered_timeout_at_its_own_objective_while_the_replicas_hang() -> None:
    async def ask() -> list[BaseException | float]:
        batcher = Batcher(Stand(hang=True), "m", "1")
        return await asyncio.gather(*(batcher.score(Input(n, n), slo_s) for n, slo_s in
                                      enumerate([0.05, 0.02, 0.05, 0.02, 0.03])), return_exceptions=True)

    answers = asyncio.run(ask())
    assert all(isinstance(a, ContainerFailed) and a.cause == "timeout" for a in answers), answers
    assert [str(a) for a in answers] == [f"container 'm' gave no answer within {ms} ms" for ms in (50, 20, 50, 20, 30)]


def test_the_serving_version_is_derived_again_once_a_heartbeat_is_too_old() -> None:
    """Cached between changes of the table, but a replica whose heartbeats stopped is not served
    past DEAD_AFTER because no other record came."""
    fresh = replica(1, time.time() - registry.DEAD_AFTER + 0.2)
    containers = Containers.__new__(Containers)
    containers.table = SimpleNamespace(rows={"m/1/1": fresh}, changes=1)
    containers.served = {}
    assert containers._serving("m") == ("1", [fresh])
    time.sleep(0.3)
    assert containers._serving("m") is None
    containers.table.rows["m/1/1"] = replica(1, time.time())
    containers.table.changes += 1
    assert containers._serving("m") == ("1", [containers.table.rows["m/1/1"]])
