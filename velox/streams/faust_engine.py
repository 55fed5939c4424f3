"""``velox worker --engine faust``: the stream engine as a Faust app, its agent and its table.

Faust does the group and its assignment, with standby replicas of the table on other workers
(``VELOX_STANDBY_REPLICAS``); the table's RocksDB per partition, the same files as the other
engine's (``velox.state.layout.table_path``), recovered from the same user-state
changelog on start and when a partition moves (by the other engine's reader first: ``Table``),
and kept current on the standbys; and the commits of source offsets. The shared engine
(``velox.streams.engine``) does everything else, as for the other engine: decoding, dead
letters, learning, records, prequential metrics, swaps, owners.

The agent takes what has arrived as one batch (``take_events``) and the engine applies it with one
multi-get and one write batch per partition, on the DBs Faust opened for the table, and sends the
changelog records through its librdkafka producer. Setting ``table[key]`` instead costs an
immediate put and one aiokafka send per event, and is refused inside ``take_events``
(faust-streaming #497). Before Faust commits source offsets it calls its sensors'
``on_commit_initiated``: there the engine takes steps 1 and 2 of ``velox.streams.checkpoint``
and commits its move transaction, so a committed offset never runs ahead of the changelog.
What this costs against Faust's own per-event ceiling:
``bench/stream.py`` (figures in bench/README.md).

Events found outside their user's home partition are moved there exactly once, as by the other
engine, but Faust's group offsets cannot join the move transaction (its consumer is aiokafka):
each transaction carries the moves' own progress instead (``velox.streams.moves``), and is
committed within ``MOVE_INTERVAL`` and before Faust commits source offsets past its moves.
Faust's consumer reads committed messages only (``ReadCommitted``; Faust does that only in its
``exactly_once`` mode, whose transactions do not cover the local RocksDB writes): a move
transaction that a crash aborts is never applied.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
import mode.loop
from confluent_kafka import Consumer
from faust.transport.drivers import aiokafka as faust_kafka
from faust.types import TP, EventT, StreamT

from velox import processes
from velox.control import owners, topics
from velox.kafka import client_config, clients
from velox.settings import Settings
from velox.state.layout import TABLE, table_dir, table_path
from velox.state.partition_store import PartitionStore
from velox.state.recovery import recover
from velox.streams import checkpoint, worker_metrics
from velox.streams.arrival import Arrival
from velox.streams.engine import BATCH, Engine
from velox.streams.startup import prepare

log = logging.getLogger("velox.worker")

# Seconds the agent gathers events before it applies them. It gathers at Faust's own pace per
# event and applies with Faust's loop waiting, so the engine's rate is Faust's ceiling times
# gather / (gather + apply), and applying costs more per event in small batches. A longer
# gather buys throughput with time between produce and visible (bench/stream.py measures both).
WITHIN = 0.05


class FaustEngine(Engine):
    """The shared engine on the partitions Faust assigns and the DBs it opens for ``table``."""

    def __init__(self, settings: Settings, app: faust.App, table: faust.Table) -> None:
        super().__init__(settings)
        self.app, self.table = app, table
        self.offsets = clients.consumer(settings, group=settings.app_id)  # reads the group's commits, never joins
        self.last_metrics = 0.0

    @property
    def reader(self) -> Consumer:
        return self.offsets

    def apply(self, arrivals: list[Arrival]) -> None:
        self.open({arrival.partition for arrival in arrivals} - self.stores.keys())
        super().apply(arrivals)

    def open(self, partitions: set[int]) -> None:
        """Take the recovered DBs of newly active partitions, and tell the edges."""
        if not partitions:
            return
        for partition in sorted(partitions):
            db = self.table.data._db_for_partition(partition)  # opened by Faust, recovered (Table)
            self.opened(partition, PartitionStore(table_path(self.settings.data, partition), opened=db))
        self.announce()
        log.info("ready: partitions %s assigned, recovered from the changelog; owning %s",
                 sorted(partitions), sorted(self.stores))

    def revoked(self, partitions: list[int]) -> None:
        self.sync()  # the next owner reads the moves' progress
        self._close([p for p in partitions if p in self.stores])
        self.announce()
        log.info("partitions %s revoked; owning %s", sorted(partitions), sorted(self.stores))

    def tick(self) -> None:
        """Between batches: take partitions that became active, commit moves (home partitions wait
        at an open move transaction), follow versions, publish metrics."""
        recovery = self.app.tables.recovery
        if not self.app.rebalancing and not recovery.in_recovery and recovery.completed.is_set():
            active = {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == self.source}
            self.open(active - self.stores.keys())
        self.producer.poll(0)
        if self.mover.due:
            self.mover.finish()
        self.swap.follow()
        if time.monotonic() - self.last_metrics >= self.settings.metrics_interval:
            self.last_metrics = time.monotonic()
            worker_metrics.publish(self.settings, self.producer, self.errors, self.positions,
                                   lambda p: self.app.consumer.highwater(TP(self.source, p)))

    def sync(self) -> None:
        """Before Faust commits source offsets: steps 1 and 2 of ``velox.streams.checkpoint``, then the
        move transaction with the moves' own progress (Faust's offsets cannot join it)."""
        checkpoint.flush_changelog(self.changelog, self.stores, self.tallies)
        self.mover.finish()

    def close(self) -> None:
        self.sync()
        self.stores.clear()  # Faust closes the DBs
        owners.announce(self.settings, self.producer, [])
        self.mover.close()
        self.offsets.close()
        self.swap.follower.close()
        self.corrections.close()
        self.producer.flush(10)


class ReadCommittedThread(faust_kafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: faust_kafka.Transport) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = "read_committed"  # what aiokafka's consumer passes its fetcher at start
        return consumer


class ReadCommittedConsumer(faust_kafka.Consumer):
    def _new_consumer_thread(self) -> ReadCommittedThread:
        return ReadCommittedThread(self, loop=self.loop, beacon=self.beacon)

    def _new_offset(self, tp: TP) -> int | None:
        """Faust's offset to commit, after merging the gaps up to the highest acked offset, as a set.

        Faust commits one past the first run of consecutive offsets among those acked and those
        it never received (gaps: transaction markers, aborted moves), merging the gaps into its
        list of acked offsets as it goes. Two things go wrong there. After a restart it records
        as a gap a range it has delivered and acked already (it resumes the fetch before it
        seeks back to the committed offset), and the merge repeats those offsets: with offsets
        twice in the list, each run it finds is one or two long, and the commits crept behind
        the applied events for tens of seconds to minutes after a kill -9. And a gap ends with
        the message that revealed it, merged whole: that message counted as done before the
        agent applied it, so a commit then and a crash would lose it. Here a gap is merged only
        up to the highest acked offset (the agent acks in order), without repeats; Faust then
        finds the run it means, committed at once.
        """
        acked, gaps = self._acked[tp], self._gap[tp]
        top = max(acked) + 1 if acked else 0
        if gaps.overlaps_range(0, top):
            done = set(acked)
            for gap in gaps.overlap(0, top):
                done.update(range(gap.begin, min(gap.end, top)))
            gaps.chop(0, top)
            acked[:] = sorted(done)
        return super()._new_offset(tp)


class ReadCommitted(faust_kafka.Transport):
    """Faust's Kafka transport, reading committed messages only (its own choice outside
    ``exactly_once`` is to read uncommitted ones: moves that a crash aborted, too)."""

    Consumer = ReadCommittedConsumer


class App(faust.App):
    def _new_transport(self) -> ReadCommitted:
        return ReadCommitted(self.conf.broker_consumer, self)


class Table(faust.Table):
    """Faust's table, whose partitions that become active on this worker are first brought up to
    the changelog's end by the other engine's reader (``velox.state.recovery``: librdkafka, a chunk of
    records per write batch), before Faust's recovery reads from the offset the DB remembers:
    Faust's own reads a record at a time (bench/stream.py times an empty data directory). A
    standby copy that becomes active is read from where it is (nothing, if it kept up). It runs
    where Faust has just opened the partitions' DBs and before its recovery asks their offsets;
    the loop waits meanwhile, as it does for Faust's own recovery."""

    def __init__(self, settings: Settings, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = settings
        self.active: set[int] = set()

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP],
                           generation_id: int = 0) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        topic = self.changelog_topic.get_topic_name()
        active = {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic}
        became, self.active = sorted(active - self.active), active
        if not became:
            return
        started = time.monotonic()
        reader = clients.consumer(self.settings, group=f"{self.settings.app_id}-recovery")  # asks watermarks, never joins
        try:
            recovered = sum(recover(self.settings, reader, topic, partition,
                                    PartitionStore(table_path(self.settings.data, partition),
                                                   opened=self.data._db_for_partition(partition)))
                            for partition in became)
        finally:
            reader.close()
        log.info("partitions %s: %d changelog records recovered in %.2f s before Faust's recovery",
                 became, recovered, time.monotonic() - started)


class BeforeCommit(faust.Sensor):
    """Faust calls it first in every commit of source offsets: the changelog is flushed then."""

    def __init__(self, lazy: Lazy) -> None:
        super().__init__()
        self.lazy = lazy

    def on_commit_initiated(self, consumer: Any) -> Any:
        if self.lazy.engine is not None:
            self.lazy.engine.sync()
        return super().on_commit_initiated(consumer)


class Lazy:
    """The engine, made when the worker first needs it (not when a module defines the app)."""

    def __init__(self, settings: Settings, app: faust.App, table: faust.Table) -> None:
        self.settings, self.app, self.table = settings, app, table
        self.engine: FaustEngine | None = None

    def get(self) -> FaustEngine:
        if self.engine is None:
            self.engine = FaustEngine(self.settings, self.app, self.table)
            if self.settings.worker_metrics_port:
                worker_metrics.serve(self.settings.worker_metrics_port)
            self.engine.log_start(f"faust ({self.settings.standby_replicas} standby replicas)")
        return self.engine


def create_app(settings: Settings) -> faust.App:
    """The Faust app of these settings: the ``observations`` agent and the ``user-state`` table.

    Add agents of your own to it: they run beside ours in the same worker (see README)."""
    (settings.data / "worker" / "faust").mkdir(parents=True, exist_ok=True)
    app = App(
        settings.app_id,
        broker=[f"kafka://{server}" for server in settings.bootstrap.split(",")],
        broker_credentials=client_config.faust_credentials(settings),
        datadir=str(settings.data / "worker" / "faust"),
        tabledir=str(table_dir(settings.data)),
        store="rocksdb://",
        topic_partitions=settings.partitions,
        table_standby_replicas=settings.standby_replicas,
        consumer_auto_offset_reset="earliest",
        # A static member, as the other engine's: a restarted worker takes its partitions back at once.
        consumer_group_instance_id=settings.worker_id,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0,
        stream_recovery_delay=0.0,
        stream_buffer_maxsize=16_384,
        web_enabled=False,
    )
    source = app.topic(settings.topic("observations"), key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw", partitions=settings.partitions)
    changelog = app.topic(topics.changelog(settings), key_type=bytes, value_type=bytes,
                          key_serializer="raw", value_serializer="raw", partitions=settings.partitions)
    table = app.tables.add(Table(settings, app, name=TABLE, beacon=app.tables.beacon, key_type=bytes, value_type=bytes,
                                 partitions=settings.partitions, changelog_topic=changelog,
                                 options={"block_cache_size": 32 * 2**20, "write_buffer_size": 16 * 2**20}))
    lazy = Lazy(settings, app, table)
    app.sensors.add(BeforeCommit(lazy))

    @app.agent(source, name="velox.observe")
    async def observe(stream: StreamT[bytes]) -> None:
        async for events in stream.take_events(BATCH, within=WITHIN):
            worker = lazy.get()
            worker.apply([arrival(event) for event in events])
            worker.tick()

    @app.timer(0.05, name="velox.tick")
    async def tick() -> None:
        lazy.get().tick()

    @app.on_partitions_revoked.connect
    async def revoked(sender: faust.App, revoked: set[TP], **_: Any) -> None:
        if lazy.engine is not None:
            lazy.engine.revoked([tp.partition for tp in revoked if tp.topic == source.get_topic_name()])

    @app.on_before_shutdown.connect
    async def shutdown(sender: faust.App, **_: Any) -> None:
        if lazy.engine is not None:
            lazy.engine.close()
            log.info("worker %s stopped", settings.worker_id)

    return app


def arrival(event: EventT) -> Arrival:
    message = event.message
    return Arrival(message.partition, message.offset, message.key, message.value,
                   message.timestamp * 1000 if message.timestamp else None, message.headers or None)


def run(settings: Settings) -> None:
    """Run the Faust worker of these settings until SIGTERM or SIGINT (Faust's own handlers)."""
    prepare(settings)
    if processes.stop_asked():
        return
    mode.loop.use("uvloop")  # the Faust way: faust -A velox.streams.faust_app worker --loop uvloop
    app = create_app(settings)
    faust.Worker(app, loglevel="info", redirect_stdouts=False).execute_from_commandline()
