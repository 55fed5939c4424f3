"""The one settings object: read once from ``VELOX_*`` variables, overridden by flags, passed down.

Nothing else in the project reads a ``VELOX_*`` variable: children get theirs from ``to_env()``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from velox.errors import ConfigError

# An interaction's confidence per kind (Hu, Koren and Volinsky's c − 1): a purchase says more than a view.
CONFIDENCE = "view=1,click=4,cart=10,purchase=20,dismiss=-4"
FEEDBACK = ("explicit", "implicit")


def _home() -> Path:
    return Path(os.path.expanduser("~"))


@dataclass(frozen=True)
class Settings:
    """Where Kafka is, where files go, and how topics are laid out.

    bootstrap: the Kafka bootstrap servers (``VELOX_BOOTSTRAP``). The local broker listens
        on this host and port, and its KRaft controller on the next port.
    kafka_config: a properties file of client settings (Kafka's names: ``security.protocol``,
        ``sasl.mechanism``, ``sasl.username``, ``sasl.password``, ``ssl.ca.location``, ...) that
        every Kafka client of the system gets, Spark's Kafka source included (``VELOX_KAFKA_CONFIG``).
    replication, min_insync: the replicas of each topic Velox creates, at most the brokers there
        are, and the replicas a write needs (default: 2 when there are 3 replicas or more, else 1).
    cache: downloaded jars, kept across checkouts (``VELOX_CACHE``).
    data: broker data, logs, tables and model versions (``VELOX_DATA``).
    namespace: prefix of every topic and of the worker group, so several systems (or tests)
        share one broker (``VELOX_NAMESPACE``).
    partitions: partitions of the ``observations`` topic (``VELOX_PARTITIONS``).
    kafka_heap: the local broker's JVM heap (``VELOX_KAFKA_HEAP``).
    rule, learning_rate, l2, evidence, forgetting: the online update rule, ``sgd`` or ``rls``,
        and its parameters; unset means the rule's own default. ``evidence`` (n₀) is how many
        ratings behind a user halve their sgd step or double their rls prior's strength (``inf``:
        the same for every user); ``forgetting`` (β, rls only) is what each new observation
        multiplies the weight of those before it by (1: none forgotten); see ``velox.model.sgd``
        and ``velox.model.rls``. The defaults (and sgd as the rule) are what bench/accuracy.py's
        robustness table supports.
    feedback, confidence: what the system learns from. ``explicit`` (the default): each event's
        score, as a rating. ``implicit``: each event's kind ("view", "click", ...), an interaction
        whose preference is 1 with the confidence ``confidence`` maps the kind to
        (``VELOX_CONFIDENCE="view=1,click=4,purchase=20"``; a negative confidence is a negative
        kind, preference 0 with that confidence's size; default ``CONFIDENCE``). An implicit
        system learns with the ``implicit`` rule (``velox.model.implicit``) and serves without
        item corrections (``item_shrinkage`` is inf: a residual bias per item is a rating's notion).
    keep_known: users the active version was trained on keep its vector; only the others learn
        online (what ``velox evaluate`` chooses when no step kept those users as good).
    item_shrinkage: k of the item corrections the edge adds to the active version's item biases:
        each item's mean residual since the version's training end, shrunk as if k more ratings
        had none; unset, k is estimated from those residuals (what bench/accuracy.py's robustness
        table supports); ``inf``: no corrections. See ``velox.model.corrections``.
    item_shrinkage_floor: the least k an estimate may give (with no noise within items the
        estimate is 0, and one rating would set an item's whole correction): a prior worth this
        many ratings at least.
    item_features: the feature function that makes an item's attributes (the ``items`` topic) a
        vector for the content model, as an entry point ``module:function`` (unset: one-hot
        categories, hashed tags, numbers standardised: ``velox.model.item_features``). The retrain
        learns with it and saves its name with the version; edges map new items with that one.
    d, items, seed: shape and seed of the random initial version a worker uses until a trained
        version exists; ``initial_version`` is a version file (``.npz``) to use instead.
    model: the name this system's model is announced under on ``model-versions``.
    models, training_log: the model store root and the Parquet training log, paths or URIs
        (default ``<data>/models`` and ``<data>/training-log``).
    holdout: the most recent share of each partition's rows kept out of training to validate.
    driver_rows: up to this many ratings, a retrain reads them from Kafka, splits and fits them
        on its driver (24 bytes a rating in its memory), where a Spark job's fixed cost would be
        most of the work; beyond, every step runs in Spark, so no rating needs to fit the driver.
    admin_token: the bearer token the edge's admin calls require (none set: admin calls refused).
    observe_token: the bearer token the edge's observe requires (none set: whoever reaches the
        edge may write feedback for any user). Tokens never appear in a settings' repr.
    tls_cert, tls_key: the edge serves HTTPS with this certificate and private key (PEM files);
        the address it announces for forwarding is then https.
    engine: the worker's stream engine: ``kafka``, our own librdkafka loop, or ``faust``, a Faust
        app (``velox.streams.faust_engine``) with the same guarantees (``VELOX_ENGINE``).
    standby_replicas: copies of each table partition the faust engine keeps current on other
        workers, from which one takes a partition over without replaying its whole changelog.
    worker_id: this worker's static group membership: a worker restarted with the same id takes
        its partitions back at once instead of waiting out a rebalance (``VELOX_WORKER_ID``).
    worker_metrics_port: the worker's Prometheus port (0: none).
    metrics_interval: seconds between prequential error records on ``model-metrics``.
    edge_host, edge_port: where the edge beside this worker listens; the worker announces it on
        ``owners`` so edges forward requests for its users there.
    edge_processes: the edge's processes, all answering on ``edge_port`` (``velox serve
        --processes``); unset: one per core available to the process (``edge_process_count``).
    epsilon: the share of top-k slots given to a random item (ε-greedy exploration; 0: none).
    cache_entries: answers each of the edge's caches keeps, top-k's and containers' (0: no cache). A
        predict is scored afresh: an item row and a d-dot cost less than a lookup (bench/README.md).
    batching: whether concurrent full-catalog top-k requests share one matrix product.
    slo_ms: the model's latency objective: an answer that cannot be ready in time (its owner
        unreachable, its partition recovering) is the model's default answer, marked as such.
    topk_index_items, topk_breadth: catalogs of at least ``topk_index_items`` items answer full-catalog
        top-k through an approximate inner-product index (``velox.model.index``; smaller ones by
        the exact scan), which scans ``topk_breadth`` of its cells per query: more is closer to
        exact and slower. Defaults: what bench/topk.py measured.
    model_threads: the threads a container replica's model may use within one call (OpenMP and
        BLAS: ``OMP_NUM_THREADS`` and the like, set in the replica); 0: the libraries' own default,
        one per core. One by default: a container parallelises by replicas and calls, and a second
        thread in a model's small calls spins against the other replicas and the edge for the
        cores (bench/README.md, the containers' causes).
    access_log: whether the edge logs a line per request (off: at thousands of requests a second
        the log line is a large part of a predict's cost; ``/metrics`` counts requests and
        latencies).
    """

    bootstrap: str = "127.0.0.1:9092"
    kafka_config: Path | None = None
    replication: int = 3
    min_insync: int | None = None
    cache: Path = _home() / ".cache" / "velox"
    data: Path = _home() / ".local" / "share" / "velox"
    namespace: str = ""
    partitions: int = 8
    kafka_heap: str = "512m"
    rule: str = "sgd"
    learning_rate: float | None = None
    l2: float | None = None
    evidence: float | None = None
    forgetting: float | None = None
    feedback: str = "explicit"
    confidence: str = CONFIDENCE
    keep_known: bool = False
    item_shrinkage: float | None = None
    item_shrinkage_floor: float = 1.0
    item_features: str | None = None
    d: int = 50
    items: int = 10_000
    seed: int = 0
    initial_version: Path | None = None
    model: str = "default"
    models: str | None = None
    training_log: str | None = None
    holdout: float = 0.1
    driver_rows: int = 2_000_000
    admin_token: str | None = dataclasses.field(default=None, repr=False)
    observe_token: str | None = dataclasses.field(default=None, repr=False)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    engine: str = "kafka"
    standby_replicas: int = 1
    worker_id: str = "worker-1"
    worker_metrics_port: int = 9464
    metrics_interval: float = 5.0
    edge_host: str = "127.0.0.1"
    edge_port: int = 8000
    edge_processes: int | None = None
    epsilon: float = 0.0
    cache_entries: int = 100_000
    batching: bool = True
    slo_ms: float = 100.0
    model_threads: int = 1
    access_log: bool = False
    topk_index_items: int = 100_000
    topk_breadth: int = 48

    def __post_init__(self) -> None:
        if self.feedback == "implicit":  # (said once here: the rule and the corrections follow the feedback)
            object.__setattr__(self, "rule", "implicit")
            if self.item_shrinkage is None:
                object.__setattr__(self, "item_shrinkage", float("inf"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``VELOX_<FIELD>`` variables, then apply non-None overrides."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            env_name = f"VELOX_{field.name.upper()}"
            if env_name in environ:
                values[field.name] = _convert(field, env_name, environ[env_name])
        values.update({key: _absolute(value) if isinstance(value, Path) else value
                       for key, value in overrides.items() if value is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        host, _, port = self.bootstrap.split(",")[0].rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"bootstrap {self.bootstrap!r} is not host:port")
        if self.replication < 1 or (self.min_insync is not None and not 1 <= self.min_insync <= self.replication):
            raise ConfigError(f"replication must be at least 1 and min_insync between 1 and it, got "
                              f"{self.replication} and {self.min_insync}")
        if self.partitions < 1:
            raise ConfigError(f"partitions must be at least 1, got {self.partitions}")
        if self.engine not in ("kafka", "faust"):
            raise ConfigError(f"engine must be 'kafka' or 'faust', got {self.engine!r}")
        if self.standby_replicas < 0:
            raise ConfigError(f"standby_replicas must be 0 or more, got {self.standby_replicas}")
        if self.feedback not in FEEDBACK:
            raise ConfigError(f"feedback must be 'explicit' or 'implicit', got {self.feedback!r}")
        if self.rule not in ("sgd", "rls", "implicit"):
            raise ConfigError(f"rule must be 'sgd', 'rls' or 'implicit', got {self.rule!r}")
        if self.rule == "implicit" and self.feedback != "implicit":
            raise ConfigError("the implicit rule learns from kinds, not scores: set feedback to implicit "
                              "(VELOX_FEEDBACK=implicit, --feedback implicit)")
        if self.feedback == "implicit" and self.item_shrinkage != float("inf"):
            raise ConfigError(f"an implicit system serves no item corrections (item_shrinkage inf), got "
                              f"{self.item_shrinkage}")
        confidences_of(self.confidence)  # (a bad map said at start, not at the first event)
        if self.evidence is not None and not self.evidence > 0:
            raise ConfigError(f"evidence must be positive (inf: no scaling), got {self.evidence}")
        if self.item_shrinkage is not None and not self.item_shrinkage > 0:
            raise ConfigError(f"item_shrinkage must be positive (inf: no item corrections; unset: estimated), "
                              f"got {self.item_shrinkage}")
        if not self.item_shrinkage_floor >= 0:
            raise ConfigError(f"item_shrinkage_floor must be 0 or more, got {self.item_shrinkage_floor}")
        if self.forgetting is not None and not 0.9 <= self.forgetting <= 1:
            raise ConfigError(f"forgetting must be between 0.9 (about the last ten observations count) and 1 "
                              f"(none forgotten), got {self.forgetting}")
        if not 0 <= self.epsilon <= 1:
            raise ConfigError(f"epsilon must be between 0 and 1, got {self.epsilon}")
        if self.edge_processes is not None and self.edge_processes < 1:
            raise ConfigError(f"edge_processes must be at least 1 (unset: one per core), got {self.edge_processes}")
        if self.model_threads < 0:
            raise ConfigError(f"model_threads must be 0 (the libraries' default) or more, got {self.model_threads}")
        if self.slo_ms <= 0:
            raise ConfigError(f"slo_ms must be positive, got {self.slo_ms}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("TLS needs both a certificate and its key (VELOX_TLS_CERT and VELOX_TLS_KEY)")
        for name, path in (("tls_cert", self.tls_cert), ("tls_key", self.tls_key)):
            if path is not None and not path.is_file():  # said at start, not when the edge binds its port
                raise ConfigError(f"{name}: no file at {path}")
        if self.driver_rows < 0:
            raise ConfigError(f"driver_rows must be 0 (every step in Spark) or more, got {self.driver_rows}")
        if self.topk_index_items < 1 or self.topk_breadth < 1:
            raise ConfigError(f"topk_index_items and topk_breadth must be at least 1, got {self.topk_index_items} "
                              f"and {self.topk_breadth}")
        if self.item_features and ":" not in self.item_features:
            raise ConfigError(f"item_features must be an entry point module:function, got {self.item_features!r}")
        if self.d < 2:
            raise ConfigError(f"d must be at least 2 (factors plus the bias), got {self.d}")

    def rule_params(self) -> dict[str, Any]:
        """The online update rule these settings name, with its parameters: what
        ``velox.model.learner.make_rule`` takes."""
        return {"name": self.rule, "learning_rate": self.learning_rate, "l2": self.l2, "evidence": self.evidence,
                "forgetting": self.forgetting}

    def edge_process_count(self) -> int:
        """The edge's processes: the setting, else the cores this process may run on."""
        return self.edge_processes or len(os.sched_getaffinity(0))

    @property
    def implicit(self) -> bool:
        return self.feedback == "implicit"

    @property
    def confidences(self) -> dict[str, float]:
        """``confidence`` as a map of kinds to confidences (negative: a negative kind)."""
        return confidences_of(self.confidence)

    @property
    def broker_address(self) -> tuple[str, int]:
        """Host and port of the first bootstrap server: where the local broker listens."""
        host, _, port = self.bootstrap.split(",")[0].rpartition(":")
        return host, int(port)

    def to_env(self) -> dict[str, str]:
        """These settings as ``VELOX_*`` variables, for a child process (the inverse of from_env)."""
        return {
            f"VELOX_{field.name.upper()}": "" if value is None else str(value)
            for field in dataclasses.fields(self)
            if (value := getattr(self, field.name)) is not None or "None" in str(field.type)
        }

    @property
    def model_store(self) -> str:
        return self.models or str(self.data / "models")

    @property
    def training_log_path(self) -> str:
        return self.training_log or str(self.data / "training-log")

    @property
    def edge_url(self) -> str:
        return f"{'https' if self.tls_cert else 'http'}://{self.edge_host}:{self.edge_port}"

    def topic(self, name: str) -> str:
        """The full name of one of Velox's topics (``observations``, ``model-metrics``, ...)."""
        return self.namespace + name

    @property
    def app_id(self) -> str:
        """The worker's consumer group; its table changelogs are named after it."""
        return self.namespace + "velox"

    def replace(self, **changes: Any) -> Settings:
        settings = dataclasses.replace(self, **changes)
        settings.validate()
        return settings


def confidences_of(text: str) -> dict[str, float]:
    """A map of kinds to confidences from its text (``VELOX_CONFIDENCE``).

    >>> confidences_of("view=1, purchase=20,dismiss=-2")
    {'view': 1.0, 'purchase': 20.0, 'dismiss': -2.0}
    """
    found: dict[str, float] = {}
    for pair in filter(None, (part.strip() for part in text.split(","))):
        kind, _, value = (half.strip() for half in pair.partition("="))
        try:
            found[kind] = float(value)
        except ValueError:
            found[kind] = math.nan
        if not kind or not math.isfinite(found[kind]) or found[kind] == 0:
            raise ConfigError(f"confidence {pair!r}: each is kind=number, the number finite and not 0 "
                              f"(negative: a negative kind), as in {CONFIDENCE!r}")
    if not found:
        raise ConfigError(f"confidence {text!r} maps no kind, as in {CONFIDENCE!r}")
    return found


def _absolute(path: Path) -> Path:
    """``path`` with ``~`` expanded, from the working folder: one spelling per folder. The shell leaves
    ``--data=~/x`` alone, a child reading VELOX_DATA back would expand it elsewhere, and a broker is
    found by its configuration's path (``d`` and ``$PWD/d`` were two brokers to ``kafka stop``)."""
    return path.expanduser().absolute()


def _convert(field: dataclasses.Field[Any], env_name: str, raw: str) -> Any:
    kind, _, optional = str(field.type).partition(" | ")
    if optional and raw == "":
        return None
    if kind == "Path":
        return _absolute(Path(raw))
    if kind == "bool":
        if raw.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise ConfigError(f"{env_name}={raw!r} is not true or false")
        return raw.lower() in ("1", "true", "yes", "on")
    if kind in ("int", "float"):
        try:
            return int(raw) if kind == "int" else float(raw)
        except ValueError:
            raise ConfigError(f"{env_name}={raw!r} is not {'an integer' if kind == 'int' else 'a number'}") from None
    return raw
