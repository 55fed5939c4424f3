"""One replica of a container: the model behind the RPC of ``velox.schemas.container_rpc``, registered by heartbeat.

The replica runs up to ``threads`` calls at once (one by default: a model need not be safe to
call from several threads) and says so in its registration, so that edges keep no more calls in
flight to it: requests wait at the edge, where the next call takes them together, instead of in
this replica's socket, one call each. Its registration is re-sent every ``HEARTBEAT`` seconds; edges count a replica dead when they
miss a few (or its connection fails), and ``stop`` removes it at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import signal
import threading
import time

import msgspec

from velox import processes
from velox.containers.served_model import BatchModel
from velox.control import container_registry as registry
from velox.schemas.container_rpc import (
    FRAME,
    INPUTS,
    MAX_FRAME,
    Call,
    Replica,
    Reply,
    decode_call,
    frame,
)
from velox.settings import Settings

log = logging.getLogger("velox.container")

HEARTBEAT = 0.25
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def limit_model_threads(threads: int) -> None:
    """The model's libraries use ``threads`` threads within a call (``Settings.model_threads``; 0:
    their own default). Said before the model is loaded: the variables reach the libraries it loads
    (OpenMP reads them once, when loaded), threadpoolctl those already loaded (numpy's BLAS)."""
    if threads:
        from threadpoolctl import threadpool_limits

        os.environ.update(dict.fromkeys(THREAD_VARIABLES, str(threads)))
        threadpool_limits(threads)


class ReplicaServer:
    def __init__(self, settings: Settings, model: BatchModel, name: str, version: str, replica: str,
                 host: str = "127.0.0.1", port: int = 0, input_kind: str = INPUTS[0], threads: int = 1) -> None:
        self.settings, self.model = settings, model
        self.name, self.version, self.replica, self.input_kind = name, version, replica, input_kind
        self.host, self.port, self.threads = host, port, threads
        self.pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="velox-model")
        self.stopping = threading.Event()
        self.calls = 0

    def run(self) -> None:
        asyncio.run(self._main())

    def stop(self, *_: object) -> None:
        self.stopping.set()

    async def _main(self) -> None:
        server = await asyncio.start_server(self._serve, self.host, self.port)
        port = server.sockets[0].getsockname()[1]
        record = Replica(self.name, self.version, self.replica, f"{self.host}:{port}", os.getpid(), 0.0, self.input_kind,
                         self.threads)
        heartbeat = threading.Thread(target=self._heartbeat, args=(record,), name="velox-heartbeat", daemon=True)
        heartbeat.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        if processes.stop_asked():  # while the model was imported (see velox.processes.on_stop)
            self.stop()
        log.info("container %s version %s replica %s: serving on %s:%d", self.name, self.version, self.replica,
                 self.host, port)
        async with server:
            while not self.stopping.is_set():
                await asyncio.sleep(0.05)
        heartbeat.join(5)
        self.pool.shutdown(wait=False, cancel_futures=True)
        log.info("container %s replica %s stopped after %d calls", self.name, self.replica, self.calls)

    def _heartbeat(self, record: Replica) -> None:
        announcer = registry.Announcer(self.settings)
        try:
            while not self.stopping.is_set():
                announcer.register(msgspec.structs.replace(record, heartbeat_at=time.time()))
                self.stopping.wait(HEARTBEAT)
        finally:
            announcer.remove(record)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        running: set[asyncio.Task[None]] = set()  # held until done: the loop keeps only weak references
        try:
            while True:
                (size,) = FRAME.unpack(await reader.readexactly(FRAME.size))
                if size > MAX_FRAME:
                    log.warning("a call of %d bytes is over the limit of %d: connection closed", size, MAX_FRAME)
                    return
                task = asyncio.ensure_future(self._answer(decode_call(await reader.readexactly(size)), writer))
                running.add(task)
                task.add_done_callback(running.discard)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the edge closed the connection
        finally:
            writer.close()

    async def _answer(self, call: Call, writer: asyncio.StreamWriter) -> None:
        reply = await asyncio.get_running_loop().run_in_executor(self.pool, self.call, call)
        if not writer.is_closing():
            writer.write(frame(reply))

    def call(self, call: Call) -> Reply:
        """The model's outputs for a call, or the error that replaced them (the edge counts both)."""
        self.calls += 1
        try:
            outputs = [float(x) for x in self.model(call.inputs)]
        except Exception as exc:  # the model's own failure: the edge answers the app's default
            return Reply(call.id, error=f"{type(exc).__name__}: {exc}")
        return Reply(call.id, outputs)  # NaN and a wrong length included: the edge checks
