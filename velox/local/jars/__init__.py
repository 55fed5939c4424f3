"""Jars from Maven Central, resolved once with Maven into the cache directory.

Each jar set is a small pom beside this file. Its cache folder is named after a hash of the
pom, so editing the pom (a version bump) fetches anew instead of reusing stale jars.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from velox.errors import JarFetchError

HERE = Path(__file__).parent
MAVEN_SETTINGS = HERE / "maven-settings.xml"


@dataclass(frozen=True)
class JarSet:
    """A pom to resolve, and optionally the only artifacts of it to keep."""

    pom: str
    keep: tuple[str, ...] = ()

    @property
    def pom_path(self) -> Path:
        return HERE / self.pom

    def folder(self, cache: Path) -> Path:
        digest = hashlib.sha256(self.pom_path.read_bytes()).hexdigest()[:12]
        return cache / "jars" / f"{self.pom_path.name.removesuffix('.pom.xml')}-{digest}"


KAFKA_BROKER = JarSet("kafka.pom.xml")
# pyspark ships Spark, Hadoop and Scala themselves: keep only what its Kafka source adds.
SPARK_KAFKA = JarSet(
    "spark-kafka.pom.xml",
    keep=(
        "spark-sql-kafka-0-10_2.13",
        "spark-token-provider-kafka-0-10_2.13",
        "kafka-clients",
        "commons-pool2",
    ),
)


def fetch(jar_set: JarSet, cache: Path) -> list[Path]:
    """Return the set's jars, running Maven first if the cache does not hold them yet."""
    folder = jar_set.folder(cache)
    if not (folder / ".complete").exists():
        _resolve(jar_set, folder)
    return sorted(folder.glob("*.jar"))


def _resolve(jar_set: JarSet, folder: Path) -> None:
    if shutil.which("mvn") is None:
        raise JarFetchError("Maven (mvn) is not on PATH; install Maven 3 to fetch the jars")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    command = [
        "mvn", "-q", "-B", "-s", str(MAVEN_SETTINGS), "-f", str(jar_set.pom_path),
        "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={staging}",
    ]
    if jar_set.keep:
        command.append("-DincludeArtifactIds=" + ",".join(jar_set.keep))
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-10:])
        raise JarFetchError(f"mvn failed for {jar_set.pom} (exit {result.returncode}):\n{tail}")
    (staging / ".complete").touch()
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
