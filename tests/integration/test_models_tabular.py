"""``credit-risk train-table``: a model of an agency's own flat table, cross-validated,
calibrated and registered (``models.tabular``)."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from test_cli import credit_risk

from models.registry import (
    TABULAR_KIND,
    ArtifactIntegrityError,
    ModelRegistry,
    RegistryError,
)
from models.report import render_html
from models.tabular import (
    CrossValidation,
    Table,
    TableError,
    TableParams,
    TabularModel,
    TrainedTable,
    cross_validate,
    fit_final,
    read_table,
    register,
    summary,
)

PARAMS = TableParams(seed=3, num_threads=1)
SECTORS = ("agriculture", "construction", "manufacturing", "retail", "transport")
CREATED = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def make_frame(rows: int = 3_000, *, seed: int = 17, signal: bool = True) -> pl.DataFrame:
    """A flat table whose ``status`` depends on ``utilisation`` (numeric) and ``sector``
    (text; construction is riskier), or on nothing when ``signal`` is false."""
    rng = np.random.default_rng(seed)
    utilisation = rng.uniform(0.0, 1.0, rows)
    sector = rng.choice(np.array(SECTORS), rows)
    logit = -2.0 + 2.5 * (utilisation - 0.5) + np.where(sector == "construction", 1.5, 0.0)
    if not signal:
        logit = np.full(rows, -1.7)
    bad = rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))
    return pl.DataFrame(
        {
            "customer_id": [f"C{n:06d}" for n in range(rows)],
            "utilisation": utilisation,
            "sector": sector,
            "dependents": rng.integers(0, 4, rows),
            "owns_home": rng.random(rows) < 0.4,
            "noise": rng.normal(size=rows),
            "status": np.where(bad, "bad", "good"),
        }
    )


def write(frame: pl.DataFrame, path: Path) -> Path:
    frame.write_csv(path)
    return path


@pytest.fixture(scope="module")
def table_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(make_frame(), tmp_path_factory.mktemp("tabular") / "agency.csv")


@pytest.fixture(scope="module")
def table(table_csv: Path) -> Table:
    return read_table(table_csv, "status", "bad", params=PARAMS)


@pytest.fixture(scope="module")
def cv(table: Table) -> CrossValidation:
    return cross_validate(table, PARAMS)


@pytest.fixture(scope="module")
def trained(table: Table, cv: CrossValidation) -> TrainedTable:
    return fit_final(table, cv, PARAMS)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory, trained: TrainedTable) -> tuple[Path, str]:
    data_dir = tmp_path_factory.mktemp("tabular-data")
    return data_dir, register(trained, ModelRegistry(data_dir), created_at=CREATED)


def test_columns_are_typed_and_the_useless_ones_dropped(table: Table) -> None:
    schema = table.schema
    assert schema.columns == ("utilisation", "sector", "dependents", "owns_home", "noise")
    assert schema.categories == {
        "sector": SECTORS,
        "dependents": ("0", "1", "2", "3"),  # a low-cardinality integer
        "owns_home": ("false", "true"),
    }
    assert "customer_id" in table.dropped and "identifier" in table.dropped["customer_id"]
    assert table.rows == 3_000 and 300 < table.bad_rows < 900
    assert table.matrix.shape == (3_000, 5) and table.label.dtype == np.int8
    sector = table.matrix[:, 1]
    assert set(np.unique(sector)) == {0.0, 1.0, 2.0, 3.0, 4.0}  # integer codes, sorted order


def test_cross_validated_auc_and_ks(table: Table, cv: CrossValidation) -> None:
    figures = summary(table, cv)
    auc, ks = figures["auc"], figures["ks"]
    assert auc["mean"] > 0.7, auc
    assert ks["mean"] > 0.25, ks
    for stat in (auc, ks):
        assert len(stat["by_fold"]) == PARAMS.folds
        assert stat["std"] == pytest.approx(float(np.std(stat["by_fold"], ddof=1)))
        assert 0.0 < stat["std"] < 0.1
    assert (figures["folds"], figures["rows"], figures["bad_rows"]) == (5, 3_000, table.bad_rows)
    assert sum(fold["rows"] for fold in cv.folds) == 3_000
    assert all(1 <= fold["best_iteration"] < PARAMS.num_boost_round for fold in cv.folds)
    assert cv.lightgbm_params["deterministic"] is True
    assert cv.lightgbm_params["min_data_in_leaf"] == 30  # 1 % of 3,000 rows
    again = cross_validate(table, PARAMS)
    assert again.folds == cv.folds and np.array_equal(again.out_of_fold_raw, cv.out_of_fold_raw)


def test_a_noise_target_gives_an_auc_near_one_half(tmp_path: Path) -> None:
    path = write(make_frame(2_000, seed=5, signal=False), tmp_path / "noise.csv")
    noise = read_table(path, "status", "bad", params=PARAMS)
    auc = summary(noise, cross_validate(noise, PARAMS))["auc"]
    assert 0.38 < auc["mean"] < 0.62, auc


def test_categorical_columns_are_native_and_unseen_categories_score(
    trained: TrainedTable, table: Table
) -> None:
    booster = trained.model.booster
    indices = table.schema.categorical_indices
    assert indices == [1, 2, 3]
    assert f"[categorical_feature: {','.join(map(str, indices))}]" in trained.model_text
    splits = []

    def walk(node: dict[str, Any]) -> None:
        if "split_feature" in node:
            splits.append((node["split_feature"], node["decision_type"]))
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    assert (1, "==") in splits, "sector is never split on as a category"
    rows = pl.DataFrame(
        {
            "utilisation": [0.5, 0.5, 0.5, 0.5],
            "sector": ["construction", "retail", "mining", None],  # mining: never seen
            "dependents": [1, 1, 7, None],
            "owns_home": [True, True, False, None],
            "noise": [0.0, 0.0, 0.0, 0.0],
        }
    )
    pd = trained.model.predict(rows)
    assert np.isfinite(pd).all() and ((pd > 0) & (pd < 1)).all()
    assert pd[0] > pd[1]  # construction is the risky sector
    assert pd[2] == pd[3]  # an unseen category scores as missing
    with pytest.raises(TableError, match="lacks the model's column"):
        trained.model.predict(rows.drop("sector"))


def test_registered_model_is_verified_and_predicts_the_same(
    saved: tuple[Path, str], trained: TrainedTable, table_csv: Path
) -> None:
    data_dir, version = saved
    registry = ModelRegistry(data_dir)
    assert registry.list_versions() == [version] and registry.current() is None
    loaded = registry.load(version)  # no catalog hash: not refused for it
    manifest = loaded.manifest
    assert loaded.kind == manifest["kind"] == TABULAR_KIND and "catalog_hash" not in manifest
    assert manifest["features"] == list(trained.table.schema.columns)
    assert manifest["categories"]["sector"] == list(SECTORS)
    assert manifest["categorical_features"] == ["sector", "dependents", "owns_home"]
    assert manifest["target"]["column"] == "status" and manifest["target"]["bad"] == "bad"
    assert manifest["data"]["rows"] == 3_000 and manifest["data"]["source"] == "agency.csv"
    assert manifest["best_iteration"] == trained.cv.rounds
    assert manifest["metrics"]["cv_auc_mean"] == trained.cv.stat("auc")["mean"]
    model = TabularModel.load(data_dir, version)
    frame = pl.read_csv(table_csv).head(200)
    assert np.array_equal(model.predict(frame), trained.model.predict(frame))
    with pytest.raises(RegistryError, match="cannot be the current"):
        registry.set_current(version)
    report = registry.report(version)[2]
    assert report["kind"] == "tabular" and len(report["cv"]["folds"]) == 5
    assert report["calibration"]["method"] in ("isotonic", "platt")
    page = render_html(report, manifest)
    assert version in page and "<h2>Folds</h2>" in page and "customer_id" in page


def test_a_tampered_model_file_is_refused(saved: tuple[Path, str], tmp_path: Path) -> None:
    shutil.copytree(saved[0] / "models", tmp_path / "models")
    registry, version = ModelRegistry(tmp_path), saved[1]
    path = registry.root / version / "model.txt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match=re.escape("model.txt")):
        registry.load(version)
    with pytest.raises(ArtifactIntegrityError):
        TabularModel.load(tmp_path, version)


def test_null_targets_are_dropped_and_counted(tmp_path: Path) -> None:
    frame = make_frame(600, seed=9).with_columns(
        pl.when(pl.int_range(pl.len()) % 50 == 0).then(None).otherwise("status").alias("status")
    )
    counted = read_table(write(frame, tmp_path / "t.csv"), "status", "bad", params=PARAMS)
    assert (counted.rows, counted.null_target_rows) == (588, 12)
    assert "12 rows with no 'status' value dropped" in counted.notes()


def test_bad_vs_rest_must_be_asked_for(tmp_path: Path) -> None:
    frame = make_frame(600, seed=9).with_columns(
        pl.when(pl.int_range(pl.len()) % 3 == 0)
        .then(pl.lit("late"))
        .otherwise("status")
        .alias("status")
    )
    path = write(frame, tmp_path / "t.csv")
    with pytest.raises(TableError, match=r"3 distinct values .* give --bad-vs-rest"):
        read_table(path, "status", "bad", params=PARAMS)
    rest = read_table(path, "status", "bad", bad_vs_rest=True, params=PARAMS)
    assert rest.bad_rows == int((frame["status"] == "bad").sum())


ERRORS: dict[str, tuple[dict[str, Any], str]] = {  # case: (changed arguments, message)
    "missing target": ({"target": "default_flag"}, r"no target column 'default_flag'.*'status'"),
    "no bad value": ({"bad": "1"}, r"no row equal to --bad '1'; its values are 'bad', 'good'"),
    "unknown ignored column": ({"ignore": ("nope",)}, r"cannot ignore 'nope': no such column"),
    "too few rows": ({}, r"has 90 rows .* 5-fold cross-validation needs at least 100"),
    "too few bad rows": ({}, r"20 bad \(status = 'bad'\) rows; 5-fold .* at least 25"),
    "no good rows": ({}, r"every row of target column 'status' is bad"),
    "no usable column": ({}, r"no usable feature column: empty: every value is null"),
    "not utf-8": ({}, r"case\.csv is not UTF-8 text: byte 0xe9 on line 7 "),
    "ragged row": ({}, r"cannot be read as CSV: line 5 has 8 fields, the header has 7"),
    "empty file": ({}, r"case\.csv is empty"),
    "no such file": ({}, r"cannot read .*case\.csv: No such file"),
}


def _error_table(case: str, path: Path) -> None:
    """Write the table of an error case to ``path``."""
    frame = make_frame(600, seed=9)
    status = pl.col("status")
    changed = {
        "too few rows": frame.head(90),
        "too few bad rows": frame.with_columns(
            pl.when(pl.int_range(pl.len()) < 20)
            .then(pl.lit("bad"))
            .otherwise(pl.lit("good"))
            .alias("status")
        ),
        "no good rows": frame.with_columns(status.replace("good", "bad")),
        "no usable column": pl.DataFrame(
            {"empty": [None] * 600, "same": [1] * 600, "status": frame["status"]}
        ),
    }
    write(changed.get(case, frame), path)
    if case == "not utf-8":
        path.write_bytes(path.read_bytes().replace(b"retail", "détail".encode("latin-1"), 1))
    elif case == "ragged row":
        lines = path.read_text().splitlines()
        lines[4] += ",extra"
        path.write_text("\n".join(lines) + "\n")
    elif case == "empty file":
        path.write_bytes(b"")
    elif case == "no such file":
        path.unlink()


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_name_the_problem(case: str, tmp_path: Path) -> None:
    changes, message = ERRORS[case]
    path = tmp_path / "case.csv"
    _error_table(case, path)
    arguments: dict[str, Any] = {"target": "status", "bad": "bad", **changes}
    ignore = arguments.pop("ignore", ())
    with pytest.raises(TableError, match=message):
        read_table(path, arguments["target"], arguments["bad"], ignore=ignore, params=PARAMS)


def test_a_directory_is_no_table(tmp_path: Path) -> None:
    with pytest.raises(TableError, match=r"cannot read .*: Is a directory"):
        read_table(tmp_path, "status", "bad")


def test_constant_and_empty_columns_are_dropped_with_a_note(tmp_path: Path) -> None:
    frame = make_frame(600, seed=9).with_columns(
        constant=pl.lit("x"), blank=pl.lit(None, dtype=pl.String), sparse=pl.lit(None)
    )
    frame = frame.with_columns(
        sparse=pl.when(pl.int_range(pl.len()) % 2 == 0).then(pl.lit("y")).otherwise(None)
    )
    notes = read_table(write(frame, tmp_path / "t.csv"), "status", "bad", params=PARAMS)
    assert notes.dropped["constant"] == "constant: every row holds 'x'"
    assert notes.dropped["blank"] == "every value is null"
    assert "sparse" in notes.schema.categories  # one value and nulls: kept
    assert "column 'blank' dropped: every value is null" in notes.notes()


def test_the_console_script_prints_one_json_object_and_registers(
    table_csv: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    result = credit_risk(
        "train-table",
        "--csv",
        str(table_csv),
        "--target",
        "status",
        "--bad",
        "bad",
        "--cv",
        "3",
        "--threads",
        "1",
        "--register",
        "--data-dir",
        str(data_dir),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    output = json.loads(lines[0])
    for key in ("auc", "ks"):
        assert set(output[key]) >= {"mean", "std"}, output[key]
        assert isinstance(output[key]["mean"], float) and isinstance(output[key]["std"], float)
    assert output["auc"]["mean"] > 0.7
    assert (output["folds"], output["rows"]) == (3, 3_000) and output["bad_rows"] > 300
    assert ModelRegistry(data_dir).load(output["version"]).kind == TABULAR_KIND
    failed = credit_risk("train-table", "--csv", str(table_csv), "--target", "status", "--bad", "1")
    assert failed.returncode == 2 and "no row equal to --bad '1'" in failed.stderr
    assert failed.stdout == ""


def test_a_tabular_model_cannot_score_subjects(saved: tuple[Path, str]) -> None:
    from models.model import RiskModel

    with pytest.raises(RegistryError, match="not one of the feature catalog"):
        RiskModel.load(saved[0], saved[1])
