"""The content model and the feature functions: on planted data the mapping recovers the planted map;
a custom feature function is the one used; the model travels with its version."""

from __future__ import annotations

import sys
import types
from dataclasses import replace

import numpy as np
import pytest

from velox.errors import ConfigError
from velox.model import content, item_features
from velox.model.version import ModelVersion, random_version

GENRES = [f"g{i}" for i in range(12)]
BRANDS = ["acme", "zenith", "orbit", "nova"]


def planted_items(n: int, d: int, seed: int = 0, noise: float = 0.0) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """Items whose [factors, bias] are a planted linear map of their genres, brand and year (plus noise);
    their attributes, the rows as planted with noise, and without."""
    rng = np.random.default_rng(seed)
    effect = {name: rng.normal(0, 1, d) for name in GENRES + BRANDS}
    per_year = rng.normal(0, 0.1, d)
    items, truth = [], np.zeros((n, d))
    for x in range(n):
        genres = sorted(rng.choice(GENRES, size=rng.integers(1, 4), replace=False).tolist())
        brand, year = str(rng.choice(BRANDS)), float(rng.integers(1950, 2000))
        items.append({"genres": genres, "brand": brand, "year": year})
        truth[x] = sum(effect[g] for g in genres) + effect[brand] + per_year * (year - 1975) + 0.5
    return items, truth + rng.normal(0, noise, truth.shape), truth


def test_the_mapping_learned_on_planted_data_recovers_the_planted_map() -> None:
    d = 6
    items, noisy, truth = planted_items(1200, d, noise=0.3)
    users = np.random.default_rng(1).normal(0, 1, (500, d))
    model = content.fit("", items[:1000], noisy[:1000], users)
    factors, bias = model.map(items[1000:])
    mapped = np.hstack([factors, bias[:, None]])
    # Tolerance: the error on 200 new items is within 5% of the rows' own spread (the noise added
    # to the training rows is 0.3 on a spread of about 1.6; a model that learned nothing is at 100%).
    relative = np.sqrt(np.mean(np.square(mapped - truth[1000:]))) / np.std(truth[1000:])
    assert relative < 0.05, relative
    assert model.l2 in content.L2 and model.loo_rmse > 0


def test_lambda_is_chosen_larger_for_noisier_rows() -> None:
    items, _, truth = planted_items(400, 4)
    rng = np.random.default_rng(2)
    users = rng.normal(0, 1, (100, 4))
    clean = content.fit("", items, truth, users)
    noisy = content.fit("", items, truth + rng.normal(0, 3.0, truth.shape), users)
    assert noisy.l2 > clean.l2


def test_a_custom_feature_function_from_an_entry_point_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []
    module = types.ModuleType("custom_features")

    def by_length(attributes: dict) -> list[float]:
        calls.append(attributes)
        return [len(attributes["title"]), 1.0]

    module.by_length = by_length  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "custom_features", module)
    items = [{"title": "x" * n} for n in range(1, 41)]
    truth = np.array([[0.1 * n, 0.0, 2.0 - 0.05 * n] for n in range(1, 41)])
    model = content.fit("custom_features:by_length", items, truth, np.ones((3, 3)))
    assert len(calls) == 40
    factors, bias = model.map([{"title": "x" * 50}])
    assert calls[-1] == {"title": "x" * 50}
    assert factors[0, 0] == pytest.approx(5.0, abs=0.3) and bias[0] == pytest.approx(-0.5, abs=0.2)
    with pytest.raises(ConfigError, match="not module:function"):
        item_features.resolve("custom_features")
    with pytest.raises(ConfigError, match="custom_features:nothing"):
        item_features.resolve("custom_features:nothing")


def test_the_content_model_is_saved_with_its_version() -> None:
    items, _, truth = planted_items(50, 3)
    version = replace(random_version(5, 3), content=content.fit("", items, truth, np.ones((2, 3))))
    loaded = ModelVersion.from_npz(version.to_npz())
    assert loaded.content is not None and loaded.content.l2 == version.content.l2
    np.testing.assert_array_equal(loaded.content.map(items[:3])[0], version.content.map(items[:3])[0])
    assert ModelVersion.from_npz(random_version(5, 3).to_npz()).content is None


def test_learn_takes_the_trained_items_that_have_attributes() -> None:
    items, _, truth = planted_items(30, 3)
    ids = np.arange(100, 130)
    model = content.learn(ids, truth, np.ones((2, 3)), {100 + x: items[x] for x in range(0, 30, 2)}, "")
    assert model is not None and model.intercept == pytest.approx(truth[::2].mean(axis=0), abs=1e-5)
    assert content.learn(ids, truth, np.ones((2, 3)), {100: items[0]}, "") is None


def described_version() -> ModelVersion:
    """Two trained items and one (item 9) described by content at the retrain, with one user."""
    return ModelVersion("v", 3.0, np.array([0, 1, 9]), np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]], np.float32),
                        np.array([0.1, -0.1, 0.5], np.float32), np.array([7]), np.array([[0.5, 0.5, 0.0]], np.float32),
                        np.array([4]), trained_items=2)


def test_rows_described_at_the_retrain_are_the_versions_but_not_trained() -> None:
    version = described_version()
    assert version.knows_item(9) and version.features_of(9) == "content" and version.features_of(1) == "trained"
    assert version.features_of(5) == "none"
    loaded = ModelVersion.from_npz(version.to_npz())
    assert loaded.trained_items == 2 and loaded.features_of(9) == "content"
    assert loaded.as_trained().item_ids.tolist() == [0, 1] and not loaded.as_trained().knows_item(9)


def test_online_updates_on_a_described_item_learn_along_its_mapped_factors() -> None:
    """The worker learns on the version it loaded: a described item's rating moves the user's factors,
    where on zero factors it could move only their bias."""
    from velox.model.learner import Learner, make_rule

    version = described_version()
    moved = {}
    for name, served in (("described", version), ("zero", version.as_trained())):
        learner = Learner(served, make_rule("sgd", learning_rate=0.1))
        state, _ = learner.observe(None, 7, 9, 5.0, offset=0)
        moved[name] = state.w - version.prior(7)
    assert np.all(moved["described"][:2] < 0)  # along [2, 2]: it predicted 5.5 for a 5
    assert moved["described"][0] == moved["described"][1]
    assert np.all(moved["zero"][:2] == 0) and moved["zero"][2] > 0  # 3.0 predicted: the bias goes up
