import numpy as np
import pytest

from velox.errors import UnknownVersion
from velox.model.store import ModelStore
from velox.model.version import random_version
from velox.schemas.model_version import VersionInfo


@pytest.mark.parametrize("as_uri", [False, True], ids=["path", "file-uri"])
def test_store_saves_lists_and_loads_versions(tmp_path, as_uri: bool) -> None:
    store = ModelStore(f"file://{tmp_path}" if as_uri else str(tmp_path))
    assert store.list() == []
    for n, created in ((1, 20.0), (2, 10.0)):
        version = random_version(5 * n, 4, seed=n)
        store.save(version, VersionInfo(id=version.id, created_at=created, d=4, training_end={0: 7 * n}))
    assert [info.created_at for info in store.list()] == [10.0, 20.0]
    loaded = store.load("initial-10x4-seed2")
    assert np.array_equal(loaded.item_factors, random_version(10, 4, seed=2).item_factors)
    assert store.info("initial-10x4-seed2").training_end == {0: 14}


def test_store_refuses_an_unknown_or_incomplete_version(tmp_path) -> None:
    store = ModelStore(str(tmp_path))
    (tmp_path / "half-written").mkdir()
    (tmp_path / "half-written" / "model.npz").write_bytes(b"")
    assert store.list() == []
    with pytest.raises(UnknownVersion, match="no complete version 'half-written'"):
        store.load("half-written")
