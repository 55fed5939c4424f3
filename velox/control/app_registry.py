"""The ``apps`` topic (compacted, keyed by app name): registering apps and linking models to them.

``velox app ...`` and the edge's admin calls write through ``register``, ``link`` and
``unlink``; every edge follows the topic (``follow``). The models an app can link are the
ones every edge serves: the system's model (the split model with each user's online weights),
``popularity`` (the same version's μ + item bias, the same for every user) and the model
containers with a live replica (``velox.control.container_registry``).
"""

from __future__ import annotations

import time

import msgspec

from velox.control import compacted, container_registry
from velox.errors import ConfigError, UnknownApp
from velox.kafka import clients, topic_admin
from velox.model.policies import KINDS
from velox.schemas import application as app_schema
from velox.schemas.application import App
from velox.schemas.container_rpc import Registration
from velox.settings import Settings

POPULARITY = "popularity"


def servable(settings: Settings, containers: dict[str, Registration]) -> list[str]:
    """The system's model, popularity, and every container with a live replica (``containers``: the
    ``containers`` topic's rows)."""
    return [settings.model, POPULARITY, *container_registry.names(containers, time.time())]


def topic(settings: Settings) -> str:
    return settings.topic("apps")


def ensure_topics(settings: Settings) -> None:
    topic_admin.create_topics(settings, {topic(settings): 1, settings.topic("policy-state"): 1},
                        {"cleanup.policy": "compact"})
    topic_admin.create_topics(settings, {settings.topic("decisions"): 1})


def follow(settings: Settings) -> compacted.FollowedTable[App]:
    """Every registered app by name, kept current."""
    ensure_topics(settings)
    return compacted.FollowedTable(settings, topic(settings), app_schema.decode_app)


def current(settings: Settings) -> dict[str, App]:
    """Every registered app, as the topic says now."""
    ensure_topics(settings)
    return compacted.read_table(settings, topic(settings), app_schema.decode_app)


def save(settings: Settings, app: App | None, name: str = "") -> None:
    """Write an app's record (None: delete the app named ``name``), acknowledged."""
    ensure_topics(settings)
    producer = clients.producer(settings)
    key = (app.name if app else name).encode()
    producer.produce(topic(settings), key=key, value=app_schema.encode(app) if app else None)
    if producer.flush(30) != 0:
        raise TimeoutError(f"the record of app {key.decode()!r} was not acknowledged within 30 s")


def register(settings: Settings, app: App) -> App:
    """Create or replace an app (its linked models kept unless ``app`` names some)."""
    if app.policy not in KINDS:
        raise ConfigError(f"policy {app.policy!r} is unknown; use one of {', '.join(KINDS)}")
    if app.slo_ms <= 0:
        raise ConfigError(f"slo_ms must be positive, got {app.slo_ms}")
    # Checked here, not at the first request: a policy drawing from these would fail every predict.
    if any(not weight >= 0 for weight in app.weights) or (app.weights and not sum(app.weights) > 0):
        raise ConfigError(f"weights must be 0 or more, at least one above 0, got {app.weights}")
    if not 0 <= app.epsilon <= 1:
        raise ConfigError(f"epsilon must be between 0 and 1, got {app.epsilon}")
    if not 0 < app.gamma <= 1:
        raise ConfigError(f"gamma must be above 0 and at most 1, got {app.gamma}")
    if not app.sticky_s >= 0:
        raise ConfigError(f"sticky_s must be 0 or more, got {app.sticky_s}")
    _check_models(settings, app.models)
    known = current(settings).get(app.name)
    if known is not None and not app.models:
        app = msgspec.structs.replace(app, models=known.models)
    save(settings, app)
    return app


def link(settings: Settings, name: str, model: str) -> App:
    app = _existing(settings, name)
    _check_models(settings, [model])
    if model not in app.models:
        app = msgspec.structs.replace(app, models=[*app.models, model])
        save(settings, app)
    return app


def unlink(settings: Settings, name: str, model: str) -> App:
    app = _existing(settings, name)
    if model in app.models:
        app = msgspec.structs.replace(app, models=[m for m in app.models if m != model])
        save(settings, app)
    return app


def _existing(settings: Settings, name: str) -> App:
    app = current(settings).get(name)
    if app is None:
        raise UnknownApp(f"no app {name!r}; register it first (velox app register {name} --default-output X)")
    return app


def _check_models(settings: Settings, models: list[str]) -> None:
    if not models:
        return
    served = servable(settings, container_registry.current(settings))
    for model in models:
        if model not in served:
            raise ConfigError(f"model {model!r} is not served here; the models are {', '.join(served)} "
                              "(a container is served once a replica runs: velox container run)")
