"""The retrain job (`velox retrain --master spark://...`) on a Spark standalone cluster (a master and one worker
started from pyspark's own jars) saves the version local mode saves from the same data."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyspark
import pytest

from velox.batch import job
from velox.batch.train import TrainParams
from velox.cli.up import load_if_new
from velox.control import topics
from velox.local.broker import free_bootstrap
from velox.model.store import ModelStore
from velox.settings import Settings

# py4j (Spark's gateway) leaves sockets for the garbage collector; nothing of ours.
pytestmark = pytest.mark.filterwarnings("ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning")

SPARK_HOME = Path(pyspark.__file__).parent
# An executor's sitecustomize: the installed velox (an editable install's finder, or a folder on
# the path holding it) is out of reach, so only a shipped copy can be imported.
HIDE_VELOX = """import os, sys
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
sys.path[:] = [p for p in sys.path if p.endswith(".zip") or not os.path.exists(os.path.join(p, "velox", "__init__.py"))]
"""


def spark_daemon(main: str, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """A Spark standalone daemon in a JVM of its own. pyspark's pip package has no build marker, so
    the worker is told the Scala version its executors' classpath is for."""
    env = {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_SCALA_VERSION": "2.13",
           "SPARK_WORKER_DIR": str(log.parent / "work")}
    with log.open("w") as out:
        return subprocess.Popen(["java", "-Xmx512m", "-cp", f"{SPARK_HOME / 'jars'}/*", main, *args], env=env,
                                stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``spark://host:port`` of a master with one registered worker (2 cores)."""
    folder = tmp_path_factory.mktemp("spark")
    port, ui, worker_ui = (int(free_bootstrap().split(":")[1]) for _ in range(3))
    master = spark_daemon("org.apache.spark.deploy.master.Master", folder / "master.log",
                          "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui))
    url = f"spark://127.0.0.1:{port}"
    worker = spark_daemon("org.apache.spark.deploy.worker.Worker", folder / "worker.log", "--host", "127.0.0.1",
                          "--webui-port", str(worker_ui), "--cores", "2", "--memory", "2g", url)
    try:
        deadline = time.monotonic() + 90
        while "Successfully registered with master" not in (folder / "worker.log").read_text():
            assert master.poll() is None and worker.poll() is None and time.monotonic() < deadline, \
                (folder / "worker.log").read_text()[-2000:]
            time.sleep(0.5)
        yield url
    finally:
        for daemon in (worker, master):
            daemon.terminate()
            daemon.wait(timeout=60)


def test_retrain_on_a_standalone_cluster_saves_what_local_mode_saves(
    standalone: str, settings: Settings, tmp_path: Path,
) -> None:
    # Every step in Spark (none on the driver): the executors read Kafka and validate in Python.
    own = settings.replace(data=tmp_path, namespace=f"sa{uuid.uuid4().hex[:8]}-", partitions=2, driver_rows=0)
    topics.ensure(own)
    load_if_new(own, None)
    # The executors' Python cannot import the velox installed here: the job must ship it.
    (tmp_path / "hide").mkdir()
    (tmp_path / "hide" / "sitecustomize.py").write_text(HIDE_VELOX)
    hidden = {"spark.executorEnv.PYTHONPATH": str(tmp_path / "hide")}
    # In this process, one after the other: the JVM started once serves both drivers.
    for master, conf in ((standalone, hidden), ("local[2]", None)):
        job.retrain(own, TrainParams(), master, conf, activate=False, reason=master)
    store = ModelStore(own.model_store)
    on_cluster, local = store.list()  # oldest first: the cluster's ran first
    assert on_cluster.training_end == local.training_end and on_cluster.training_rows == local.training_rows > 1000
    assert abs(on_cluster.validation_rmse - local.validation_rmse) < 1e-6
    a, b = store.load(on_cluster.id), store.load(local.id)
    np.testing.assert_array_equal(a.user_ids, b.user_ids)
    np.testing.assert_allclose(a.user_vectors, b.user_vectors, atol=1e-4)
