"""A risk model trained on a flat table an agency brings (``credit-risk train-table``).

The rules, in the order they apply:

* **Reading.** The file must be UTF-8 (a byte-order mark is allowed); polars infers each
  column's type from every row; an empty field is null. The target column is read as text.
* **Target.** A row is *bad* when its target (surrounding blanks stripped) equals ``bad``;
  every other non-null value is good; rows whose target is null or blank are dropped and
  counted. A target with more than two distinct values is refused unless ``bad_vs_rest`` is
  given, which states that very rule explicitly.
* **Columns.** Every other column, except those ignored, is a feature unless it is dropped
  with a note: every value null; one value on every row (a column holding one value and
  some nulls is kept: its nulls may carry information); text with more distinct values than
  a category can learn from (an identifier or free text). Text, boolean and integer columns
  with at most ``max_integer_categories`` distinct values are *categorical*: their values, in
  sorted order, are coded 0..k-1 and declared to LightGBM by index (native categorical
  splits, no one-hot, no pandas); the mapping is saved with the model and applied again at
  predict time, where a category never seen in training is scored as missing. Every other
  column is numeric. LightGBM sees the columns under names reduced to ``[A-Za-z0-9_]``.
* **Cross-validation.** Stratified K folds (seeded); in each fold LightGBM stops early on a
  stratified inner split of the fold's training rows; each test fold's AUC and KS come from
  :func:`models.evaluation.discrimination`; the summary gives their mean and sample
  standard deviation (ddof=1) over the folds. Every fold needs ``MIN_ROWS_PER_FOLD`` rows
  and ``MIN_CLASS_ROWS_PER_FOLD`` bad and good rows.
* **Small data.** 15 leaves, ``min_data_in_leaf`` (and per category group) ≈ 1 % of the rows
  within [10, 100], L2 5, 63 bins, learning rate 0.05, row and column subsampling;
  deterministic for a given seed and thread count.
* **The registered model** is trained on every row for the folds' mean best iteration. Its
  calibrator is chosen by :func:`models.calibration.choose_calibrator` on the out-of-fold raw
  scores (each row scored by the fold model that did not see it), as scikit-learn's
  ``CalibratedClassifierCV(ensemble=False)`` does: no row is held back from the final model
  and no calibration row was seen by the model that scored it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import polars as pl
from sklearn.model_selection import StratifiedKFold, train_test_split

from models.calibration import CalibrationChoice, Calibrator, choose_calibrator
from models.evaluation import discrimination
from models.registry import TABULAR_KIND, ModelRegistry, RegistryError
from models.report import build_tabular_report
from models.scorecard import DEFAULT_SCORECARD
from models.table_input import (
    CATEGORICAL,
    MIN_CLASS_ROWS_PER_FOLD,
    MIN_ROWS_PER_FOLD,
    NUMERIC,
    Table,
    TableError,
    TableParams,
    TableSchema,
    prepare_table,
    read_table,
)

__all__ = [
    "MIN_CLASS_ROWS_PER_FOLD",
    "MIN_ROWS_PER_FOLD",
    "CrossValidation",
    "Table",
    "TableError",
    "TableParams",
    "TableSchema",
    "TabularModel",
    "TrainedTable",
    "cross_validate",
    "fit_final",
    "prepare_table",
    "read_table",
    "register",
    "summary",
]

F64 = npt.NDArray[np.float64]
Labels = npt.NDArray[np.int8]


@dataclass(frozen=True)
class CrossValidation:
    folds: tuple[dict[str, Any], ...]  # fold, rows, bad_rows, auc, ks, best_iteration
    out_of_fold_raw: F64  # each row's raw score from the fold model that did not see it
    lightgbm_params: dict[str, Any]
    seconds: float

    def stat(self, name: str) -> dict[str, Any]:
        """Mean and sample standard deviation (ddof=1) of a per-fold figure, and each fold's."""
        values = np.array([fold[name] for fold in self.folds], dtype=np.float64)
        return {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)),
            "by_fold": values.tolist(),
        }

    @property
    def rounds(self) -> int:
        """The final model's boosting rounds: the folds' mean best iteration."""
        return max(1, round(float(np.mean([fold["best_iteration"] for fold in self.folds]))))


def _booster(
    table: Table,
    rows: npt.NDArray[np.intp],
    lgb_params: dict[str, Any],
    rounds: int,
    stop: tuple[npt.NDArray[np.intp], int] | None = None,
) -> Any:
    schema = table.schema
    train_set = lgb.Dataset(
        table.matrix[rows],
        label=table.label[rows],
        feature_name=schema.model_feature_names,
        categorical_feature=schema.categorical_indices,
        params=lgb_params,
        free_raw_data=True,
    )
    if stop is None:
        return lgb.train(lgb_params, train_set, num_boost_round=rounds)
    stop_rows, patience = stop
    valid = lgb.Dataset(table.matrix[stop_rows], label=table.label[stop_rows], reference=train_set)
    return lgb.train(
        lgb_params,
        train_set,
        num_boost_round=rounds,
        valid_sets=[valid],
        valid_names=["inner"],
        callbacks=[lgb.early_stopping(patience, verbose=False)],
    )


def _probability(raw: F64) -> F64:
    out: F64 = np.exp(-np.logaddexp(0.0, -raw))
    return out


def cross_validate(table: Table, params: TableParams | None = None) -> CrossValidation:
    """Stratified K-fold AUC and KS, each fold's model stopped early on an inner split."""
    started = time.perf_counter()
    params = params or TableParams()
    lgb_params = params.lightgbm_params(table.rows)
    outer = StratifiedKFold(n_splits=params.folds, shuffle=True, random_state=params.seed)
    out_of_fold = np.empty(table.rows, dtype=np.float64)
    folds: list[dict[str, Any]] = []
    for number, (train_rows, test_rows) in enumerate(
        outer.split(table.matrix, table.label), start=1
    ):
        fit_rows, stop_rows = train_test_split(
            train_rows,
            test_size=params.inner_validation_fraction,
            stratify=table.label[train_rows],
            random_state=params.seed + number,
        )
        booster = _booster(
            table,
            np.sort(fit_rows),
            lgb_params,
            params.num_boost_round,
            (np.sort(stop_rows), params.early_stopping_rounds),
        )
        best = int(booster.best_iteration) or int(booster.current_iteration())
        raw = np.asarray(
            booster.predict(
                table.matrix[test_rows],
                raw_score=True,
                num_iteration=best,
                num_threads=params.num_threads,
            ),
            dtype=np.float64,
        )
        out_of_fold[test_rows] = raw
        figures = discrimination(table.label[test_rows], _probability(raw))
        folds.append(
            {
                "fold": number,
                "rows": int(test_rows.size),
                "bad_rows": int(table.label[test_rows].sum()),
                "auc": figures["auc"],
                "ks": figures["ks"],
                "best_iteration": best,
            }
        )
    seconds = time.perf_counter() - started
    return CrossValidation(tuple(folds), out_of_fold, lgb_params, seconds)


def summary(table: Table, cv: CrossValidation) -> dict[str, Any]:
    """The JSON summary ``credit-risk train-table`` prints."""
    return {
        "auc": cv.stat("auc"),
        "ks": cv.stat("ks"),
        "folds": len(cv.folds),
        "rows": table.rows,
        "bad_rows": table.bad_rows,
        "null_target_rows": table.null_target_rows,
        "columns": {
            kind: [c for c in table.schema.columns if table.schema.kind(c) == kind]
            for kind in (NUMERIC, CATEGORICAL)
        },
        "dropped_columns": table.dropped,
        "best_iterations": [fold["best_iteration"] for fold in cv.folds],
        "notes": table.notes(),
    }


@dataclass(frozen=True)
class TabularModel:
    """A calibrated model of a table's columns: PDs for rows of a polars frame."""

    schema: TableSchema
    booster: Any  # lightgbm.Booster
    calibrator: Calibrator
    version: str | None = None
    num_threads: int = 2

    @classmethod
    def load(cls, data_dir: Path, version: str) -> TabularModel:
        """A verified tabular model from ``<data_dir>/models``."""
        loaded = ModelRegistry(data_dir).load(version)
        if loaded.kind != TABULAR_KIND:
            raise RegistryError(f"model {version} is a {loaded.kind} model, not a tabular one")
        schema = TableSchema.from_manifest(loaded.manifest)
        return cls(schema, loaded.booster, loaded.calibrator, loaded.version)

    def raw_score(self, frame: pl.DataFrame) -> F64:
        raw = self.booster.predict(
            self.schema.matrix(frame), raw_score=True, num_threads=self.num_threads
        )
        return np.asarray(raw, dtype=np.float64)

    def predict(self, frame: pl.DataFrame) -> F64:
        """Calibrated probability that each row is bad."""
        return self.calibrator.predict(self.raw_score(frame))


@dataclass(frozen=True)
class TrainedTable:
    table: Table
    cv: CrossValidation
    params: TableParams
    model_text: str
    model: TabularModel
    calibration: CalibrationChoice
    report: dict[str, Any]
    seconds: float


def fit_final(table: Table, cv: CrossValidation, params: TableParams | None = None) -> TrainedTable:
    """The model on every row for ``cv.rounds`` rounds, calibrated on the out-of-fold scores."""
    started = time.perf_counter()
    params = params or TableParams()
    every_row = np.arange(table.rows, dtype=np.intp)
    model_text: str = _booster(table, every_row, cv.lightgbm_params, cv.rounds).model_to_string()
    booster = lgb.Booster(model_str=model_text)  # exactly what the registry will save
    calibrator, choice = choose_calibrator(
        cv.out_of_fold_raw,
        table.label,
        every_row,  # every row its own group
        folds=params.calibration_folds,
        seed=params.seed,
        floor=params.pd_floor,
        ece_bins=params.ece_bins,
    )
    report = build_tabular_report(
        folds=cv.folds,
        cv_auc=cv.stat("auc"),
        cv_ks=cv.stat("ks"),
        out_of_fold=(table.label, calibrator.predict(cv.out_of_fold_raw)),
        importance_gain=booster.feature_importance(importance_type="gain"),
        importance_split=booster.feature_importance(importance_type="split"),
        columns=[(c, table.schema.kind(c)) for c in table.schema.columns],
        dropped=table.dropped,
        calibration=choice,
        ece_bins=params.ece_bins,
    )
    model = TabularModel(table.schema, booster, calibrator, num_threads=params.num_threads)
    seconds = cv.seconds + time.perf_counter() - started
    return TrainedTable(table, cv, params, model_text, model, choice, report, seconds)


def register(
    trained: TrainedTable, registry: ModelRegistry, *, created_at: datetime | None = None
) -> str:
    """Save a trained table model as a new (never current) registry version."""
    table, cv = trained.table, trained.cv
    fields = {
        "kind": TABULAR_KIND,
        **table.schema.to_manifest(),
        "target": {
            "column": table.target,
            "bad": table.bad,
            "rule": "bad = target equal to `bad`; every other non-null value good; "
            "null targets dropped",
        },
        "training_params": trained.params.to_dict(),
        "lightgbm_params": cv.lightgbm_params,
        "best_iteration": cv.rounds,
        "cv_best_iterations": [fold["best_iteration"] for fold in cv.folds],
        "calibration": trained.calibration.to_dict(),
        "scorecard": DEFAULT_SCORECARD.to_dict(),
        "data": {
            "source": table.source,
            "sha256": table.sha256,
            "rows": table.rows,
            "bad_rows": table.bad_rows,
            "null_target_rows": table.null_target_rows,
            "dropped_columns": table.dropped,
            "ignored_columns": list(table.ignored),
        },
        "metrics": trained.report["summary"],
        "training_seconds": round(trained.seconds, 3),
    }
    return registry.save_artifacts(
        model_text=trained.model_text,
        calibrator=trained.model.calibrator,
        report=trained.report,
        fields=fields,
        created_at=created_at,
        make_current=False,
    )
