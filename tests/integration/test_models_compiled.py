"""The compiled forest (lleaves): equal to LightGBM's raw score to 1e-9, attached to a
registry version without touching its verified artifacts, served by ``RiskModel`` for
single rows, refused (LightGBM serves) when tampered with, and ``credit-risk compile``.

LightGBM's ``predict(raw_score=True, num_threads=1)`` is the reference throughout. The model
is a small LightGBM (20 trees) on synthetic catalog-shaped rows, saved through the registry.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
from test_cli import credit_risk

from features.catalog import catalog_hash, feature_names
from models.calibration import PlattCalibrator
from models.compiled import (
    COMPILED_OBJECT,
    COMPILED_RECORD,
    TOLERANCE,
    CompiledForest,
    check_equivalence,
    compile_version,
    sample_rows,
)
from models.data import categorical_features
from models.model import RiskModel
from models.registry import COMPILED_DIR, MODEL_FILE, ModelRegistry
from models.scorecard import DEFAULT_SCORECARD

pytest.importorskip("lleaves")

TREES = 20


def _train_model_text(seed: int, *, absent_industries: bool = True) -> str:
    """20 trees on synthetic rows; the categorical feature has NaNs (absent), as in the
    catalog's data, unless ``absent_industries`` is False (splits of missing type None)."""
    rng = np.random.default_rng(seed)
    names = list(feature_names())
    rows = 3_000
    matrix = rng.normal(0.0, 10.0, size=(rows, len(names)))
    matrix[rng.random(matrix.shape) < 0.2] = np.nan
    industry = names.index(categorical_features()[0])
    matrix[:, industry] = rng.integers(0, 12, rows)
    if absent_industries:
        matrix[rng.random(rows) < 0.2, industry] = np.nan
    logit = 0.1 * np.nan_to_num(matrix[:, 0]) - 0.1 * np.nan_to_num(matrix[:, 3])
    logit += np.isin(matrix[:, industry], (2, 5, 7)) - 2.0
    label = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    params = {
        "objective": "binary",
        "num_leaves": 15,
        "min_data_in_leaf": 20,
        "learning_rate": 0.2,
        "deterministic": True,
        "num_threads": 1,
        "seed": seed,
        "verbosity": -1,
    }
    dataset = lgb.Dataset(
        matrix, label=label, feature_name=names, categorical_feature=categorical_features()
    )
    booster = lgb.train(params, dataset, num_boost_round=TREES)
    text: str = booster.model_to_string()
    return text


def _register(data_dir: Path, seed: int, *, absent_industries: bool = True) -> str:
    return ModelRegistry(data_dir).save_artifacts(
        model_text=_train_model_text(seed, absent_industries=absent_industries),
        calibrator=PlattCalibrator(coefficient=1.0, intercept=0.0, floor=0.0003),
        report={},
        fields={
            "kind": "catalog",
            "catalog_hash": catalog_hash(),
            "features": list(feature_names()),
            "scorecard": DEFAULT_SCORECARD.to_dict(),
        },
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("models-compiled")
    _register(directory, seed=3)
    return directory


@pytest.fixture(scope="module")
def compiled(data_dir: Path) -> Path:
    result = compile_version(ModelRegistry(data_dir), rows=2_000)
    assert result.equivalence.passed, result.record
    assert result.path is not None
    return result.path


def _manifest_files(version_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in version_dir.iterdir() if p.is_file()}


def test_compiled_forest_equals_lightgbm_on_random_and_nan_rows(
    data_dir: Path, compiled: Path
) -> None:
    loaded = ModelRegistry(data_dir).load()
    forest = CompiledForest.from_bytes(
        (loaded.path / MODEL_FILE).read_bytes(), (compiled / COMPILED_OBJECT).read_bytes()
    )
    rng = np.random.default_rng(99)
    width = len(feature_names())
    random_rows = rng.normal(0.0, 20.0, size=(3_000, width))
    random_rows[rng.random(random_rows.shape) < 0.3] = np.nan
    nan_rows = np.full((5, width), np.nan)
    sampled = sample_rows(loaded.booster, 2_000, seed=5)
    for rows in (random_rows, nan_rows, sampled):
        expected = loaded.booster.predict(rows, raw_score=True, num_threads=1)
        assert np.max(np.abs(forest.raw_score(rows) - expected)) <= TOLERANCE
        check = check_equivalence(loaded.booster, forest, rows)
        assert check.passed and check.max_abs_diff <= TOLERANCE
    for row in (random_rows[:50], nan_rows[:1]):
        for one in row:
            single = forest.raw_score(one)
            assert single.shape == (1,)
            reference = loaded.booster.predict(one.reshape(1, -1), raw_score=True, num_threads=1)
            assert abs(single[0] - reference[0]) <= TOLERANCE


def test_sample_rows_reach_every_leaf_and_include_nans(data_dir: Path) -> None:
    booster = ModelRegistry(data_dir).load().booster
    rows = sample_rows(booster, 1_000)
    assert np.isnan(rows).any() and np.isnan(rows[0]).all()
    leaves = booster.predict(rows, pred_leaf=True, num_threads=1)
    reached = sum(len(np.unique(leaves[:, t])) for t in range(leaves.shape[1]))
    total = sum(tree["num_leaves"] for tree in booster.dump_model()["tree_info"])
    assert reached >= 0.95 * total, (reached, total)


def test_compile_attaches_a_record_without_touching_the_verified_artifacts(
    data_dir: Path, compiled: Path
) -> None:
    registry = ModelRegistry(data_dir)
    version, manifest, _ = registry.verify()  # still verifies
    record = json.loads((compiled / COMPILED_RECORD).read_text())
    assert record["model_sha256"] == manifest["artifacts"][MODEL_FILE]
    assert record["equivalence"]["passed"] is True
    assert record["equivalence"]["max_abs_diff"] <= TOLERANCE
    assert record["equivalence"]["rows"] >= 2_000
    assert {"lleaves", "llvmlite"} <= set(record["libraries"])
    assert set(manifest["artifacts"]) == {"model.txt", "calibrator.json", "report.json"}
    assert compiled == registry.path(version) / COMPILED_DIR


def test_risk_model_scores_single_rows_with_the_compiled_forest(
    data_dir: Path, compiled: Path
) -> None:
    model = RiskModel.load(data_dir)
    assert model.engine == "lleaves", model.engine_reason
    reference = RiskModel.load(data_dir, compiled=False)
    assert reference.engine == "lightgbm"
    rows = sample_rows(model.booster, 300, seed=8)
    for row in rows[:100]:
        assert abs(model.raw_score(row)[0] - reference.raw_score(row)[0]) <= TOLERANCE
    decision, expected = model.decide(rows[5]), reference.decide(rows[5])
    assert decision.reasons == expected.reasons  # reasons stay LightGBM's pred_contrib
    assert abs(decision.probability_of_default - expected.probability_of_default) <= 1e-9
    assert model.predict(rows).shape == (rows.shape[0],)


def test_tampered_object_falls_back_to_lightgbm(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    version = _register(tmp_path, seed=4, absent_industries=False)
    registry = ModelRegistry(tmp_path)
    result = compile_version(registry, version, rows=1_000)
    assert result.path is not None
    assert RiskModel.load(tmp_path).engine == "lleaves"
    before = _manifest_files(registry.path(version))
    object_path = result.path / COMPILED_OBJECT
    original = object_path.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0xFF
    object_path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="models.model"):
        model = RiskModel.load(tmp_path)
    assert model.engine == "lightgbm"
    assert "forest.o sha256 differs" in model.engine_reason
    assert "scoring with LightGBM" in caplog.text
    row = sample_rows(model.booster, 10, seed=1)[3]
    assert (
        model.raw_score(row)[0]
        == model.booster.predict(row.reshape(1, -1), raw_score=True, num_threads=1)[0]
    )
    object_path.write_bytes(original)
    assert RiskModel.load(tmp_path).engine == "lleaves"  # the recorded bytes verify again
    # a record claiming another model.txt, or a failed equivalence, is refused too
    record_path = result.path / COMPILED_RECORD
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps(record | {"model_sha256": "0" * 64}))
    assert "another model.txt" in RiskModel.load(tmp_path).engine_reason
    failed = record | {"equivalence": record["equivalence"] | {"max_abs_diff": 1e-6}}
    record_path.write_text(json.dumps(failed))
    assert RiskModel.load(tmp_path).engine == "lightgbm"
    assert _manifest_files(registry.path(version)) == before  # nothing verified was touched


def test_a_forest_outside_the_tolerance_is_not_attached(tmp_path: Path) -> None:
    version = _register(tmp_path, seed=6)
    registry = ModelRegistry(tmp_path)
    result = compile_version(registry, version, rows=1_000, tolerance=-1.0)  # nothing passes
    assert not result.equivalence.passed and result.path is None
    assert not (registry.path(version) / COMPILED_DIR).exists()
    assert RiskModel.load(tmp_path).engine == "lightgbm"


def test_values_within_lightgbms_zero_threshold_score_as_zero(
    data_dir: Path, compiled: Path
) -> None:
    """LightGBM's predict reads |x| <= 1e-35 as 0.0; lleaves alone compared the value itself
    and took the other branch at a -1.0000000180025095e-35 split (raw scores 0.45 apart)."""
    model = RiskModel.load(data_dir)
    assert model.engine == "lleaves"
    rows = sample_rows(model.booster, 50, seed=2)
    for tiny in (1e-35, -1e-35, 1.0000000180025095e-35, -1.0000000180025095e-35, 5e-324):
        for row in rows:
            row = row.copy()
            row[np.arange(row.size) % 2 == 0] = tiny
            expected = model.booster.predict(row.reshape(1, -1), raw_score=True, num_threads=1)
            assert abs(model.raw_score(row)[0] - expected[0]) <= TOLERANCE


def test_compile_command(data_dir: Path, compiled: Path) -> None:
    result = credit_risk("compile", "--rows", "1000", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["engine"] == "lleaves"
    assert summary["max_abs_diff"] <= TOLERANCE
    assert summary["rows"] >= 1_000
    assert RiskModel.load(data_dir).engine == "lleaves"
    missing = credit_risk("compile", "20200101T000000Z-00000000", "--data-dir", str(data_dir))
    assert missing.returncode == 3
    assert "no model version" in missing.stderr
