"""predict_many gathers only the batch's rows: the same scores as gathering every user's row."""

from __future__ import annotations

import numpy as np

from velox.model.batch_scores import predict_many, rows
from velox.model.version import ModelVersion


def every_row(version: ModelVersion, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """predict_many as it was: every user's vector (and the mean user) copied, every id sorted."""
    def row(known: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return np.array([int(np.flatnonzero(known == i)[0]) if i in known else len(known) for i in ids.tolist()])

    w = np.vstack([version.user_vectors, version.mean_user]).astype(np.float64)[row(version.user_ids, users)]
    f = np.vstack([version.item_factors, np.zeros(version.d - 1, np.float32)]).astype(np.float64)
    item_rows = row(version.item_ids, items)
    bias = np.append(version.item_bias, np.float32(0)).astype(np.float64)[item_rows]
    return version.global_mean + bias + np.einsum("ij,ij->i", w[:, :-1], f[item_rows]) + w[:, -1]


def shuffled_version(rng: np.random.Generator) -> ModelVersion:
    users, items, d = 300, 40, 4
    return ModelVersion(
        id="v", global_mean=3.0, item_ids=rng.permutation(1000)[:items].astype(np.int64) - 500,
        item_factors=rng.normal(size=(items, d - 1)).astype(np.float32),
        item_bias=rng.normal(size=items).astype(np.float32),
        user_ids=rng.permutation(10_000)[:users].astype(np.int64) - 5000,
        user_vectors=rng.normal(size=(users, d)).astype(np.float32), user_counts=np.ones(users, np.int64))


def test_predict_many_equals_gathering_every_row_with_unknown_users_and_items() -> None:
    rng = np.random.default_rng(3)
    version = shuffled_version(rng)
    users = np.concatenate([rng.choice(version.user_ids, 200), rng.integers(-6000, 6000, 100)])
    items = np.concatenate([rng.choice(version.item_ids, 200), rng.integers(-600, 600, 100)])
    rng.shuffle(users)
    assert (~np.isin(users, version.user_ids)).sum() > 50 and (~np.isin(items, version.item_ids)).sum() > 50
    np.testing.assert_array_equal(predict_many(version, users, items), every_row(version, users, items))
    # An unknown user is the mean user; an unknown item has zero factors and bias.
    unknown = np.array([10**12])
    assert predict_many(version, unknown, unknown)[0] == np.float64(3.0) + np.float64(version.mean_user[-1])


def test_rows_of_ids_in_any_order_with_absent_ones_past_the_end() -> None:
    rng = np.random.default_rng(4)
    known = rng.permutation(50).astype(np.int64) * 3
    wanted = rng.integers(-5, 160, 400)
    expected = [int(np.flatnonzero(known == i)[0]) if i in known else len(known) for i in wanted.tolist()]
    assert rows(known, wanted).tolist() == expected
    assert rows(np.sort(known), wanted).tolist() == [
        int(np.flatnonzero(np.sort(known) == i)[0]) if i in known else len(known) for i in wanted.tolist()]
    assert rows(np.zeros(0, np.int64), wanted).tolist() == [0] * len(wanted)


def test_a_version_with_items_added_finds_old_and_new_items() -> None:
    version = shuffled_version(np.random.default_rng(5))
    added = np.array([7777, -7777, 8888])
    other = version.with_items(np.concatenate([version.item_ids, added]),
                               np.vstack([version.item_factors, np.ones((3, version.d - 1), np.float32)]),
                               np.concatenate([version.item_bias, np.float32([1, 2, 3])]))
    assert other.items.rows(np.concatenate([version.item_ids, added, [1]])).tolist() == [*range(43), 43]
    assert other.knows_item(-7777) and not version.knows_item(-7777)
    assert [version.knows_user(int(u)) for u in version.user_ids[:3]] == [True] * 3
    assert version.training_count(int(version.user_ids[7])) == 1 and version.training_count(123456) == 0
