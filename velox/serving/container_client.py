"""The edge's side of model containers: batched calls to live replicas, answers checked and cached.

Per container and version, requests wait at the edge (``Batcher``) until a live replica has room
for a call, then go out together as one (the batch size adapted as for top-k), over a connection
kept open to each replica. A replica is live while its heartbeat is fresh (``velox.control.container_registry``)
and its connection has not failed since that heartbeat. Whatever goes wrong (no live replica, a
timeout, a broken connection, the model's exception, a wrong number of outputs, a NaN) raises
``ContainerFailed`` with its cause: the app answers its default and counts it per model and cause.
Answers are cached by (container, version, input): a new version never serves an old answer.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import math
import time
from typing import NamedTuple

import msgspec
from prometheus_client import Counter, Histogram

from velox.control import container_registry as registry
from velox.schemas.container_rpc import (
    FRAME,
    Call,
    Input,
    Replica,
    Reply,
    decode_reply,
    frame,
)
from velox.serving.batching import AdaptiveLimit
from velox.serving.cache import PredictionCache
from velox.settings import Settings

FAILURES = Counter("velox_edge_container_failures", "Container answers replaced by the app's default, by cause.",
                   ["model", "cause"])
CALLS = Counter("velox_edge_container_calls", "Calls to container replicas.", ["model", "replica"])
EXPIRY_GRAIN = 0.001  # seconds: deadlines that close together are answered together
BATCH_SIZE = Histogram("velox_edge_container_batch_size", "Inputs sent to a container in one call.",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))


class ContainerFailed(Exception):
    def __init__(self, model: str, cause: str, reason: str) -> None:
        super().__init__(reason)
        self.model, self.cause, self.reason = model, cause, reason


class Connection:
    """One open connection to a replica: calls go out as they come, replies are matched by id."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.ids = itertools.count()
        self.pending: dict[int, asyncio.Future[Reply]] = {}
        self.writer: asyncio.StreamWriter | None = None
        self.broken = False
        self.failed_at = 0.0  # time.time() when it broke
        self._reading: asyncio.Task[None] | None = None
        self._connecting = asyncio.Lock()

    async def call(self, inputs: list[Input]) -> Reply:
        if self.writer is None:
            async with self._connecting:  # calls made while connecting wait for the one connection
                if self.writer is None:
                    host, port = self.address.rsplit(":", 1)
                    reader, self.writer = await asyncio.open_connection(host, int(port))
                    if self.broken:  # closed while connecting
                        self.writer.close()
                        raise ConnectionError(f"the connection to {self.address} was closed")
                    self._reading = asyncio.ensure_future(self._read(reader))
        answer: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        call_id = next(self.ids)
        self.pending[call_id] = answer
        self.writer.write(frame(Call(call_id, inputs)))
        return await answer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                (size,) = FRAME.unpack(await reader.readexactly(FRAME.size))
                reply = decode_reply(await reader.readexactly(size))
                answer = self.pending.pop(reply.id, None)
                if answer is not None and not answer.done():
                    answer.set_result(reply)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, msgspec.DecodeError) as exc:
            self.broken, self.failed_at = True, time.time()
            if self.writer is not None:
                self.writer.close()
            for answer in self.pending.values():
                if not answer.done():
                    answer.set_exception(ConnectionError(f"replica at {self.address} closed the connection ({exc})"))
            self.pending.clear()

    def close(self) -> None:
        self.broken, self.failed_at = True, time.time()
        if self._reading is not None:
            self._reading.cancel()
        if self.writer is not None:
            self.writer.close()


class Request(NamedTuple):
    input: Input
    slo_s: float
    deadline: float  # the loop's time
    answer: asyncio.Future[float]


def share(waiting: int, room: int, limit: int) -> int:
    """A call's size when ``waiting`` requests wait and the replicas have room for ``room`` calls:
    an even share, so that two idle replicas each compute half at once rather than one all of it
    and the other none (then they took turns: bench/README.md, the containers' causes)."""
    return min(limit, -(-waiting // max(room, 1)))


class Batcher:
    """One container version's queue, as Clipper's: a call goes out when a live replica has room for
    one more (its registered concurrency), and takes every waiting request up to the batch limit,
    or its even share of them when several replicas have room.

    Requests wait here, not in a replica's socket: calls sent as requests arrived, one input each,
    queued at the replica and were all answered late (bench/README.md, the containers' causes).
    The limit is adapted (AIMD) on each call's own time, which no longer includes a queue."""

    def __init__(self, containers: Containers, model: str, version: str) -> None:
        self.containers, self.model, self.version = containers, model, version
        self.limit = AdaptiveLimit()
        self.queue: collections.deque[Request] = collections.deque()
        self.in_flight: collections.Counter[str] = collections.Counter()  # calls by replica address
        self.sending: set[asyncio.Task[None]] = set()  # held until done: the loop keeps only weak references
        # The requests by objective, each in the order they came, so in the order of their deadlines: one
        # timer for them all (a timer each cost as much as the rest of a request: the loop's heap of them).
        self.deadlines: dict[float, collections.deque[Request]] = {}
        self.timer: asyncio.TimerHandle | None = None

    def score(self, request: Input, slo_s: float) -> asyncio.Future[float]:
        """The request's answer to come, a ``timeout`` once ``slo_s`` passed (the caller may cancel it)."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[float] = loop.create_future()
        if not self.queue:  # the requests handled in this turn of the loop join it
            loop.call_soon(self._dispatch)
        waiting = Request(request, slo_s, loop.time() + slo_s, answer)
        self.queue.append(waiting)
        same = self.deadlines.get(slo_s)
        if same is None:
            same = self.deadlines[slo_s] = collections.deque()
        same.append(waiting)
        if self.timer is None or waiting.deadline < self.timer.when():
            if self.timer is not None:
                self.timer.cancel()
            self.timer = loop.call_at(waiting.deadline, self._expire)
        return answer

    def _expire(self) -> None:
        """Answer ``timeout`` to the requests whose deadline passed, and wait for the next deadline."""
        loop = asyncio.get_running_loop()
        now, nearest = loop.time(), math.inf
        for slo_s, requests in list(self.deadlines.items()):
            while requests and (requests[0].answer.done() or requests[0].deadline <= now):
                request = requests.popleft()
                if not request.answer.done():
                    request.answer.set_exception(ContainerFailed(
                        self.model, "timeout", f"container {self.model!r} gave no answer within {1000 * slo_s:g} ms"))
            if requests:
                nearest = min(nearest, requests[0].deadline)
            else:
                del self.deadlines[slo_s]
        self.timer = loop.call_at(max(nearest, now + EXPIRY_GRAIN), self._expire) if self.deadlines else None

    def _dispatch(self) -> None:
        while self._waiting():
            try:
                replica, free = self.containers.free_replica(self.model, self.version, self.in_flight)
            except ContainerFailed as exc:
                while self.queue:
                    request = self.queue.popleft()
                    if not request.answer.done():
                        request.answer.set_exception(exc)
                return
            if replica is None:
                return  # every replica is busy: the next reply dispatches again
            size = share(len(self.queue), free, self.limit.size)
            batch: list[Request] = []
            while self._waiting() and len(batch) < size:
                batch.append(self.queue.popleft())
            self.in_flight[replica.address] += 1
            task = asyncio.ensure_future(self._send(replica, batch))
            self.sending.add(task)
            task.add_done_callback(self.sending.discard)

    def _waiting(self) -> bool:
        """Whether a request still waits: those already answered (their deadline passed) are dropped."""
        while self.queue and self.queue[0].answer.done():
            self.queue.popleft()
        return bool(self.queue)

    async def _send(self, replica: Replica, batch: list[Request]) -> None:
        started = time.perf_counter()
        outputs: list[float] | list[ContainerFailed]
        try:
            outputs = await self.containers.call(self.model, replica, [r.input for r in batch])
            BATCH_SIZE.observe(len(batch))
        except ContainerFailed as exc:
            outputs = [exc] * len(batch)
        finally:
            self.in_flight[replica.address] -= 1
        self.limit.observe(time.perf_counter() - started, min(r.slo_s for r in batch))
        self._dispatch()
        for request, output in zip(batch, outputs):
            if request.answer.done():
                continue
            if isinstance(output, ContainerFailed):
                request.answer.set_exception(output)
            elif math.isfinite(output):
                request.answer.set_result(output)
            else:
                request.answer.set_exception(ContainerFailed(self.model, "nan", f"{self.model} answered {output}"))


class Containers:
    def __init__(self, settings: Settings) -> None:
        self.table = registry.follow(settings)
        # Connections and queues belong to the event loop that made them: one per server, but a
        # process may run several (the tests do).
        self.connections: dict[tuple[asyncio.AbstractEventLoop, str], Connection] = {}  # by loop and address
        self.turn = itertools.count()
        self.batchers: dict[tuple[asyncio.AbstractEventLoop, str, str], Batcher] = {}
        self.cache = PredictionCache("container", settings.cache_entries)
        self.seen, self.registered = -1, frozenset[str]()
        self.served: dict[str, tuple[int, float, tuple[str, list[Replica]] | None]] = {}  # by model: see _serving

    def __contains__(self, model: str) -> bool:
        """Whether ``model`` is a container (live or not): asked on every app request, so the
        names are derived again only when the topic changed."""
        if self.seen != self.table.changes:
            self.seen = self.table.changes
            self.registered = frozenset(r.name for r in self.table.rows.values() if isinstance(r, Replica))
        return model in self.registered

    async def score(self, model: str, request: Input, slo_s: float) -> tuple[str, float]:
        """The serving version of ``model`` and its score for ``request``, within ``slo_s``."""
        try:
            return await self._score(model, request, slo_s)
        except ContainerFailed as exc:
            FAILURES.labels(model=model, cause=exc.cause).inc()
            raise

    async def _score(self, model: str, request: Input, slo_s: float) -> tuple[str, float]:
        found = self._serving(model)
        if found is None:
            raise ContainerFailed(model, "no_replica", f"container {model!r} has no live replica")
        version, replicas = found
        if replicas[0].input == "user,item" and request.context:  # not sent, and not part of the answer's identity
            request = Input(request.user, request.item)
        key = (model, version, request.user, request.item, msgspec.json.encode(request.context))
        cached = self.cache.peek(key)
        if cached is not None:
            return version, cached
        queue = (asyncio.get_running_loop(), model, version)
        batcher = self.batchers.get(queue)
        if batcher is None:
            batcher = self.batchers[queue] = Batcher(self, model, version)
        score = await batcher.score(request, slo_s)
        self.cache.put(key, score)
        return version, score

    def free_replica(self, model: str, version: str,
                     in_flight: collections.Counter[str]) -> tuple[Replica | None, int]:
        """The live replica of ``model``'s ``version`` with the fewest of its ``in_flight`` calls, if
        it has room for one more (None: every one is busy), and the calls they all have room for;
        ``no_replica`` if none is live."""
        found = self._serving(model)
        replicas = [r for r in (found[1] if found and found[0] == version else []) if not self._failed(r)]
        if not replicas:
            raise ContainerFailed(model, "no_replica", f"container {model!r} version {version} has no live replica")
        turn = next(self.turn) % len(replicas)  # ties in turn
        replica = min(replicas[turn:] + replicas[:turn], key=lambda r: in_flight[r.address] / r.concurrency)
        room = sum(max(r.concurrency - in_flight[r.address], 0) for r in replicas)
        return (replica if in_flight[replica.address] < replica.concurrency else None), room

    def _serving(self, model: str) -> tuple[str, list[Replica]] | None:
        """``registry.serving``, asked on every request: derived again only when the table changed
        or one of the model's live replicas reaches its heartbeat's end (what it depends on)."""
        now = time.time()
        cached = self.served.get(model)
        if cached is not None and cached[0] == self.table.changes and now <= cached[1]:
            return cached[2]
        changes, rows = self.table.changes, self.table.rows  # in this order: the follower sets rows first
        found = registry.serving(rows, model, now)
        until = min((r.heartbeat_at + registry.DEAD_AFTER for r in registry.live(rows, now) if r.name == model),
                    default=math.inf)
        self.served[model] = (changes, until, found)
        return found

    async def call(self, model: str, replica: Replica, inputs: list[Input]) -> list[float]:
        """One call to ``replica``; its outputs, checked for length. No deadline of its own: each
        request has its own, and the replica's slot stays taken until it answers (a replica that
        hangs takes no more calls)."""
        connection = self._connection(replica)
        CALLS.labels(model=model, replica=replica.replica).inc()
        try:
            reply = await connection.call(inputs)
        except (ConnectionError, OSError) as exc:
            connection.close()
            raise ContainerFailed(model, "crash", f"replica {replica.replica} of {model!r}: {exc}") from None
        if reply.error:
            raise ContainerFailed(model, "error", f"{model!r} raised {reply.error}")
        if len(reply.outputs) != len(inputs):
            raise ContainerFailed(model, "wrong_length",
                                  f"{model!r} answered {len(reply.outputs)} outputs for {len(inputs)} inputs")
        try:
            return [float(x) for x in reply.outputs]
        except (TypeError, ValueError):
            raise ContainerFailed(model, "not_a_number", f"{model!r} answered outputs that are not numbers") from None

    def _connection(self, replica: Replica) -> Connection:
        key = (asyncio.get_running_loop(), replica.address)
        connection = self.connections.get(key)
        if connection is None or connection.broken:
            connection = self.connections[key] = Connection(replica.address)
        return connection

    def _failed(self, replica: Replica) -> bool:
        """Whether the replica's connection broke and no heartbeat came since: it may be dead."""
        connection = self.connections.get((asyncio.get_running_loop(), replica.address))
        return connection is not None and connection.broken and connection.failed_at >= replica.heartbeat_at

    def disconnect(self) -> None:
        """Close this event loop's connections to replicas, on it."""
        loop = asyncio.get_running_loop()
        for key in [key for key in self.connections if key[0] is loop]:
            self.connections.pop(key).close()
        for key in [key for key in self.batchers if key[0] is loop]:
            del self.batchers[key]

    def close(self) -> None:
        self.table.close()
