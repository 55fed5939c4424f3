import numpy as np

from velox.model.version import ModelVersion, random_version


def test_version_npz_round_trip() -> None:
    version = ModelVersion(
        id="v7", global_mean=3.5, item_ids=np.array([10, 20]), item_factors=np.ones((2, 3), np.float32),
        item_bias=np.array([0.5, -0.5], np.float32), user_ids=np.array([1]),
        user_vectors=np.full((1, 4), 2.0, np.float32), user_counts=np.array([12]),
    )
    loaded = ModelVersion.from_npz(version.to_npz())
    assert loaded.id == "v7" and loaded.d == 4 and loaded.user_counts.tolist() == [12]
    assert loaded.score(loaded.prior(1), 10) == version.score(version.prior(1), 10) == 3.5 + 0.5 + 6.0 + 2.0


def test_unknown_user_starts_from_the_mean_user_and_unknown_item_has_zero_factors() -> None:
    version = ModelVersion(
        id="v", global_mean=1.0, item_ids=np.array([0]), item_factors=np.ones((1, 1), np.float32),
        item_bias=np.array([2.0], np.float32), user_ids=np.array([5, 6]),
        user_vectors=np.array([[1.0, 0.0], [3.0, 2.0]], np.float32), user_counts=np.array([1, 1]),
    )
    assert version.prior(99).tolist() == [2.0, 1.0]
    assert version.score(np.array([2.0, 1.0]), 12345) == 1.0 + 0.0 + 1.0  # only the user's bias term
    assert not version.knows_item(12345) and not version.knows_user(99)


def test_random_version_is_deterministic() -> None:
    a, b = random_version(30, 6, seed=4), random_version(30, 6, seed=4)
    assert a.id == b.id and np.array_equal(a.item_factors, b.item_factors)
