"""Loading a container's model from the user's own module, however the command was started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from velox.containers.served_model import load
from velox.errors import ConfigError

LOADS = "from velox.containers.served_model import load; print(load('ratings_model:model')([1, 2, 3]))"


def test_the_users_module_in_the_working_folder_loads_as_from_the_velox_script(tmp_path: Path) -> None:
    """The `velox` console script's sys.path starts with its own folder, not the working one: run
    isolated (-I), Python leaves the working folder out the same way."""
    (tmp_path / "ratings_model.py").write_text("def model(inputs):\n    return [4.5 for _ in inputs]\n")
    done = subprocess.run([sys.executable, "-I", "-c", LOADS], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[4.5, 4.5, 4.5]"


@pytest.mark.parametrize(("target", "said"), [
    ("no_colon", "a container's model is 'module:attribute'"),
    ("velox_no_such_module_x:model", "cannot import 'velox_no_such_module_x'"),
    ("velox.errors:nothing_here", "module 'velox.errors' has no 'nothing_here'"),
])
def test_a_wrong_target_is_one_error_naming_it(target: str, said: str) -> None:
    with pytest.raises(ConfigError, match=said):
        load(target)
