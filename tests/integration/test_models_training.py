"""The risk model end to end on a small generated province: training, calibration,
registry, decisions with reasons, and the report."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import TEST_SECRET, TODAY

from features.catalog import CATALOG, Direction, FeatureDtype, catalog_hash, feature_names
from features.training import training_frame
from models.data import LabelledRows, data_fingerprint, monthly_dates
from models.model import RiskModel
from models.reasons import INQUIRY_GROUP, MAX_REASONS
from models.registry import (
    ArtifactIntegrityError,
    CatalogMismatchError,
    ModelNotFoundError,
    ModelRegistry,
)
from models.report import render_html
from models.training import (
    TrainedModel,
    TrainingParams,
    incomplete_label_dates,
    records_end,
    train,
    train_on_frames,
)
from records.generator import ProvinceParams, generate_province
from records.ingest import Ingestor
from records.pseudonym import Pseudonymiser
from records.store import RecordStore
from records.tables import TABLE_ORDER

PROVINCE = ProvinceParams(entities=400, persons=1_200, seed=7)
DATES = monthly_dates(date(2025, 5, 31), 12)  # records run to 2026-06-20: labels complete
IN_TIME, OOT = DATES[:9], DATES[9:]
PARAMS = TrainingParams(
    seed=11, num_boost_round=200, early_stopping_rounds=25, num_leaves=15, min_data_in_leaf=40
)
CREATED = datetime(2026, 11, 26, 7, 15, tzinfo=UTC)


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models-province") / "store.duckdb"
    frames = generate_province(PROVINCE)
    with RecordStore(path) as store:
        ingestor = Ingestor(store, Pseudonymiser(TEST_SECRET), today=TODAY)
        for table in TABLE_ORDER:
            assert ingestor.ingest_frame(table, frames[table], label=table).rejected == 0
    return path


@pytest.fixture(scope="module")
def store(province: Path) -> Iterator[RecordStore]:
    with RecordStore(province) as opened:
        yield opened


@pytest.fixture(scope="module")
def frames(store: RecordStore) -> tuple[pl.DataFrame, pl.DataFrame]:
    return training_frame(store, IN_TIME), training_frame(store, OOT)


@pytest.fixture(scope="module")
def trained(frames: tuple[pl.DataFrame, pl.DataFrame]) -> TrainedModel:
    return train_on_frames(frames[0], frames[1], horizon_months=12, params=PARAMS)


@pytest.fixture(scope="module")
def oot(frames: tuple[pl.DataFrame, pl.DataFrame]) -> LabelledRows:
    return LabelledRows.of(frames[1])


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory, trained: TrainedModel) -> tuple[Path, str]:
    data_dir = tmp_path_factory.mktemp("models-data")
    version = ModelRegistry(data_dir).save(trained, created_at=CREATED)
    return data_dir, version


@pytest.fixture
def registry_copy(saved: tuple[Path, str], tmp_path: Path) -> tuple[ModelRegistry, str]:
    """A private copy of the saved registry, free to tamper with."""
    shutil.copytree(saved[0] / "models", tmp_path / "models")
    return ModelRegistry(tmp_path), saved[1]


def test_out_of_time_discrimination_and_calibration(trained: TrainedModel) -> None:
    metrics = trained.metrics
    assert metrics["oot_defaults"] >= 40, "the province must give the OOT set enough defaults"
    assert metrics["oot_auc"] > 0.7, metrics
    assert metrics["oot_ks"] > 0.25, metrics
    assert metrics["oot_gini"] == pytest.approx(2 * metrics["oot_auc"] - 1)
    assert metrics["oot_ece"] < 0.015, metrics
    assert trained.calibration.method in ("isotonic", "platt")
    assert set(trained.calibration.out_of_fold_ece) == {"isotonic", "platt"}
    assert 1 <= trained.best_iteration <= PARAMS.num_boost_round
    assert trained.data.validation_dates == tuple(OOT)


def test_holdout_is_a_seeded_fifth_of_the_in_time_subjects(
    frames: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    from models.data import holdout_split

    rows = LabelledRows.of(frames[0])
    fit, holdout = holdout_split(rows, 0.2, seed=11)
    assert not set(rows.groups[fit]) & set(rows.groups[holdout])
    assert 0.15 < holdout.size / rows.rows < 0.25
    assert rows.label[holdout].sum() > 0
    again = holdout_split(rows, 0.2, seed=11)
    assert np.array_equal(again[1], holdout)
    assert not np.array_equal(holdout_split(rows, 0.2, seed=12)[1], holdout)


def test_calibrated_pds_are_probabilities_near_the_observed_rate(
    trained: TrainedModel, oot: LabelledRows
) -> None:
    pd = trained.predict(oot.matrix)
    assert ((pd >= PARAMS.pd_floor) & (pd <= 1 - PARAMS.pd_floor)).all()
    observed = oot.label.mean()
    assert abs(pd.mean() - observed) < 0.3 * observed, (pd.mean(), observed)


def test_training_is_deterministic(
    store: RecordStore, trained: TrainedModel, tmp_path: Path, saved: tuple[Path, str]
) -> None:
    again = train(store, as_of_dates=IN_TIME, validation_dates=OOT, params=PARAMS)
    assert again.model_text == trained.model_text
    assert again.calibrator == trained.calibrator
    assert again.data.fingerprints == trained.data.fingerprints
    version = ModelRegistry(tmp_path).save(again, created_at=CREATED.replace(second=1))
    first = (saved[0] / "models" / saved[1] / "model.txt").read_bytes()
    assert (tmp_path / "models" / version / "model.txt").read_bytes() == first
    assert version.split("-")[1] == saved[1].split("-")[1]


def test_fingerprint_changes_with_the_data(frames: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    rows = LabelledRows.of(frames[1])
    shuffled = LabelledRows.of(frames[1].sample(fraction=1.0, shuffle=True, seed=1))
    assert data_fingerprint(shuffled) == data_fingerprint(rows)  # canonical order
    changed = frames[1].with_columns(
        pl.when(pl.int_range(pl.len()) == 7)
        .then(1 - pl.col("label"))
        .otherwise(pl.col("label"))
        .alias("label")
    )
    assert data_fingerprint(LabelledRows.of(changed)) != data_fingerprint(rows)


def test_validation_dates_must_follow_the_training_dates(store: RecordStore) -> None:
    with pytest.raises(ValueError, match="follow"):
        train(store, as_of_dates=OOT, validation_dates=IN_TIME, params=PARAMS)


def test_dates_whose_labels_run_past_the_records_are_flagged(store: RecordStore) -> None:
    assert incomplete_label_dates(store, DATES, 12) == []
    assert records_end(store) == date(2026, 6, 20)
    assert incomplete_label_dates(store, [date(2025, 6, 20), date(2025, 6, 30)], 12) == [
        date(2025, 6, 30)
    ]
    assert incomplete_label_dates(store, [DATES[-1]], 13) == [DATES[-1]]


def test_monotone_constraints_hold_on_a_grid(trained: TrainedModel, oot: LabelledRows) -> None:
    """Individual conditional expectation: moving one monotone feature along a grid never
    moves any row's raw score against the feature's catalog direction."""
    used = trained.booster.feature_importance(importance_type="split") > 0
    rows = oot.matrix[:: max(1, oot.rows // 300)]
    checked = 0
    for index, spec in enumerate(CATALOG):
        if spec.direction is Direction.NONE or spec.dtype is FeatureDtype.CATEGORY:
            continue
        if not used[index]:
            continue
        column = oot.matrix[:, index]
        present = column[~np.isnan(column)]
        grid = np.unique(np.quantile(present, np.linspace(0, 1, 12)))
        grid = np.unique(np.concatenate([grid, [grid[0] - 1, grid[-1] * 2 + 1]]))
        curves = []
        for value in grid:
            probe = rows.copy()
            probe[:, index] = value
            curves.append(trained.raw_score(probe))
        steps = np.diff(np.vstack(curves), axis=0) * int(spec.direction)
        assert (steps >= -1e-12).all(), spec.name
        checked += 1
    assert checked >= 5, "too few monotone features were used to test the constraints"


def test_registry_round_trip(
    saved: tuple[Path, str], trained: TrainedModel, oot: LabelledRows
) -> None:
    data_dir, version = saved
    registry = ModelRegistry(data_dir)
    assert version.startswith("20261126T071500Z-")
    assert registry.list_versions() == [version] and registry.current() == version
    loaded = registry.load()
    manifest = loaded.manifest
    directory = data_dir / "models" / version
    for name, digest in manifest["artifacts"].items():
        assert hashlib.sha256((directory / name).read_bytes()).hexdigest() == digest
    assert set(manifest["artifacts"]) == {"model.txt", "calibrator.json", "report.json"}
    assert manifest["catalog_hash"] == catalog_hash()
    assert manifest["features"] == list(feature_names())
    assert manifest["categorical_features"] == ["ent_industry"]
    assert manifest["data"]["fingerprints"] == trained.data.fingerprints
    assert manifest["data"]["as_of_dates"] == [d.isoformat() for d in IN_TIME]
    assert manifest["lightgbm_params"]["deterministic"] is True
    assert manifest["calibration"]["method"] == trained.calibration.method
    assert set(manifest["libraries"]) >= {"python", "lightgbm", "scikit-learn", "polars", "numpy"}
    assert manifest["metrics"]["oot_auc"] == trained.metrics["oot_auc"]
    assert json.loads((directory / "calibrator.json").read_text())["method"] == (
        trained.calibration.method
    )
    model = RiskModel(loaded)
    assert np.array_equal(model.predict(oot.matrix), trained.predict(oot.matrix))
    with pytest.raises(ModelNotFoundError):
        registry.load("20200101T000000Z-00000000")


def test_a_flipped_byte_is_refused_naming_the_file(
    registry_copy: tuple[ModelRegistry, str],
) -> None:
    registry, version = registry_copy
    for name in ("model.txt", "calibrator.json", "report.json"):
        path = registry.root / version / name
        original = path.read_bytes()
        tampered = bytearray(original)
        tampered[len(tampered) // 2] ^= 0x01
        path.write_bytes(bytes(tampered))
        with pytest.raises(ArtifactIntegrityError, match=re.escape(name)) as caught:
            registry.load(version)
        assert caught.value.path == path
        path.write_bytes(original)
    registry.load(version)  # restored: accepted again
    manifest = registry.root / version / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"best_iteration": ', '"best_iteration": 1'))
    with pytest.raises(ArtifactIntegrityError, match=r"manifest\.json"):
        registry.load(version)


def test_a_model_of_another_catalog_is_refused(registry_copy: tuple[ModelRegistry, str]) -> None:
    registry, version = registry_copy
    directory = registry.root / version
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["catalog_hash"] = "0" * 64
    data = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    (directory / "manifest.json").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    (directory / "manifest.sha256").write_text(f"{digest}  manifest.json\n")
    with pytest.raises(CatalogMismatchError, match="catalog hash differs") as caught:
        registry.load(version)
    assert "0" * 64 in str(caught.value) and catalog_hash() in str(caught.value)
    # Its report can still be read (integrity is checked, not the catalog).
    assert registry.report(version)[2]["summary"]["calibration"] in ("isotonic", "platt")


def test_decisions_carry_catalog_reasons_sorted_by_contribution(
    saved: tuple[Path, str], oot: LabelledRows
) -> None:
    model = RiskModel.load(saved[0])
    decisions = model.decide_batch(oot.matrix)
    specs = {spec.name: spec for spec in CATALOG}
    thin = [d for d in decisions if d.thin_file]
    explained = [d for d in decisions if d.reasons]
    assert thin and all(d.reasons == () for d in thin)
    assert len(explained) > len(decisions) // 4
    for decision in explained:
        assert not decision.thin_file
        assert 1 <= len(decision.reasons) <= MAX_REASONS + 1
        contributions = [r.contribution for r in decision.reasons]
        assert contributions == sorted(contributions, reverse=True)
        assert all(c > 0 for c in contributions)
        for reason in decision.reasons:
            spec = specs[reason.feature]
            assert (reason.code, reason.description) == (spec.reason_code, spec.reason_text)
        if len(decision.reasons) > MAX_REASONS:
            assert specs[decision.reasons[-1].feature].group == INQUIRY_GROUP
        assert decision.model_version == saved[1]
        assert 300 <= decision.score <= 900 and decision.grade in "ABCDE"
    one = explained[0]
    row = next(i for i, d in enumerate(decisions) if d is one)
    assert model.decide(oot.matrix[row]) == one
    assert model.decide(oot.matrix[row], explain=False).reasons == ()


def test_single_rows_are_predicted_on_one_thread(
    saved: tuple[Path, str], oot: LabelledRows
) -> None:
    model = RiskModel.load(saved[0], batch_threads=2)
    calls: list[object] = []
    real = model.booster.predict

    def spy(data: np.ndarray, **kwargs: object) -> np.ndarray:
        calls.append(kwargs.get("num_threads"))
        return real(data, **kwargs)  # type: ignore[no-any-return]

    model.booster.predict = spy
    model.predict(oot.matrix[0])
    model.decide(oot.matrix[0])
    model.predict(oot.matrix[:10])
    assert calls[:-1] == [1] * (len(calls) - 1) and calls[-1] == 2
    with pytest.raises(ValueError, match="catalog order"):
        model.predict(np.zeros(5))


def test_report_json_and_html(saved: tuple[Path, str]) -> None:
    version, manifest, report = ModelRegistry(saved[0]).report()
    assert version == saved[1]
    oot_figures = report["oot"]
    for key in ("auc", "gini", "ks", "brier", "ece", "calibration_table", "roc", "grades"):
        assert oot_figures[key] is not None, key
    assert len(oot_figures["calibration_table"]) == 10
    assert [g["grade"] for g in oot_figures["grades"]["grades"]] == list("ABCDE")
    assert isinstance(oot_figures["grades"]["default_rate_falls_from_worst_to_best"], bool)
    assert sum(g["count"] for g in oot_figures["grades"]["grades"]) == oot_figures["rows"]
    assert report["stability"]["psi"] >= 0
    distribution = report["score_distribution"]
    assert sum(distribution["oot"]) == oot_figures["rows"]
    assert len(report["importance"]) == len(feature_names())
    gains = [row["gain"] for row in report["importance"]]
    assert gains == sorted(gains, reverse=True) and gains[0] > 0
    page = render_html(report, manifest)
    assert page.count('<img src="data:image/png;base64,') == 5
    assert version in page and "http://" not in page and "https://" not in page
