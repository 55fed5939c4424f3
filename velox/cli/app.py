"""``velox app register | link | unlink | list``: applications, several models behind one name chosen by a policy."""

from __future__ import annotations

import argparse
import logging

from velox.model.policies import KINDS
from velox.settings import Settings

log = logging.getLogger("velox")


def add(commands: argparse._SubParsersAction) -> None:
    app = commands.add_parser("app", help="applications: several models behind one name, chosen by a policy")
    actions = app.add_subparsers(dest="action", required=True)
    register = actions.add_parser("register", help="create or replace an app")
    register.add_argument("name")
    register.add_argument("--default-output", type=float, required=True, help="the score answered when no model can")
    register.add_argument("--slo-ms", type=float, default=100.0, help="the app's latency objective")
    register.add_argument("--policy", choices=KINDS, default="fixed")
    register.add_argument("--weights", type=lambda text: [float(w) for w in text.split(",")], default=[],
                          help="ab: the split, e.g. 0.9,0.1, in the order the models are linked")
    register.add_argument("--epsilon", type=float, default=0.1, help="epsilon: the share of random choices")
    register.add_argument("--gamma", type=float, default=0.1, help="exp3: the share of uniform exploration")
    register.add_argument("--per-user", action="store_true", help="one policy state per user")
    register.add_argument("--sticky-s", type=float, default=0.0, help="a user keeps their model this long")
    for action in ("link", "unlink"):
        change = actions.add_parser(action, help=f"{action} a model: the system's model, popularity, or a model "
                                                 "container (link: one that is served now)")
        change.add_argument("name")
        change.add_argument("model")
    actions.add_parser("list", help="the registered apps")
    app.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    import msgspec

    from velox.control import app_registry
    from velox.schemas.application import App

    if args.action == "register":
        app = app_registry.register(settings, App(args.name, args.default_output, args.slo_ms, [], args.policy,
                                                  args.weights, args.epsilon, args.gamma, args.per_user, args.sticky_s))
    elif args.action in ("link", "unlink"):
        app = getattr(app_registry, args.action)(settings, args.name, args.model)
    else:
        for app in app_registry.current(settings).values():
            print(msgspec.json.encode(app).decode())
        return 0
    log.info("app %s: models %s, policy %s", app.name, ", ".join(app.models) or "none", app.policy)
    return 0
