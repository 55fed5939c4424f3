"""``velox model list | activate | unpin``: an activation by hand pins its version, the list shows each
version's trigger and times and the pin, unpin lifts it."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from velox.cli import build_parser
from velox.control import pins, versions
from velox.model.store import ModelStore
from velox.model.synthetic import planted
from velox.schemas.model_version import VersionInfo
from velox.settings import Settings


def model(own: Settings, capsys: pytest.CaptureFixture[str], *words: str) -> str:
    """``velox model WORDS`` in this process: its output."""
    args = build_parser().parse_args(["model", *words])
    assert args.run(own, args) == 0
    return capsys.readouterr().out


def test_activate_by_hand_pins_list_shows_it_and_unpin_lifts_it(settings: Settings, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    own = settings.replace(data=tmp_path, namespace=f"m{uuid.uuid4().hex[:8]}-")
    store = ModelStore(own.model_store)
    for name, trigger in (("v1", "manual"), ("v2", "drift: online RMSE 1.3 above 1.1 for 60 s")):
        store.save(replace(planted(users=5, items=4, d=3, seed=1), id=name),
                   VersionInfo(id=name, created_at=time.time(), d=3, training_end={}, reason=trigger))
    versions.activate(own, "v2", reason="drift: online RMSE 1.3 above 1.1 for 60 s")
    assert pins.current(own) is None  # an automatic activation pins nothing

    model(own, capsys, "activate", "v1")
    assert pins.current(own).version == "v1"
    listed = model(own, capsys, "list").splitlines()
    [first, second] = listed
    assert first.startswith("* v1 ") and "trigger: manual" in first and "activated 20" in first
    assert "PINNED since" in first and "velox model unpin" in first
    assert second.startswith("  v2 ") and "trigger: drift: online RMSE 1.3" in second and "PINNED" not in second

    model(own, capsys, "unpin")
    assert pins.current(own) is None
    assert "PINNED" not in model(own, capsys, "list")
