"""Training the risk model: LightGBM on point-in-time frames, then PD calibration.

``train`` builds the training frames with :func:`features.training.training_frame` at the
in-time as-of dates and at the later, out-of-time (OOT) validation dates. A seeded,
stratified 20 % of the in-time *subjects* is held out (all their rows): LightGBM stops
early on it, and the calibrator is fitted on it. The OOT rows are used for nothing but the
evaluation report. Features are the catalog's, in catalog order; categorical features are
declared as such and every other feature carries its catalog direction as a monotone
constraint. Training is deterministic for a given seed and thread count.

The booster itself is fitted by a *fitter* (:data:`BoosterFitter`): :func:`fit_local` (one
process, ``lightgbm.train`` with early stopping) by default, or the Dask engine of
:mod:`models.dask_training`. Everything around it (frames, holdout split, parameters,
calibration, report, fingerprints) is the same code for every engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import polars as pl

from features.catalog import catalog_hash, feature_names
from features.training import add_months, training_frame
from models.calibration import CalibrationChoice, Calibrator, choose_calibrator
from models.data import (
    LabelledRows,
    categorical_features,
    data_fingerprint,
    holdout_split,
    monotone_constraints,
)
from models.profile import build_profile
from models.report import build_report
from models.scorecard import DEFAULT_SCORECARD, ScorecardConfig, scores
from records.store import RecordStore

__all__ = [
    "LOCAL_ENGINE",
    "BoosterFitter",
    "DataSummary",
    "FittedBooster",
    "TrainedModel",
    "TrainingParams",
    "fit_local",
    "incomplete_label_dates",
    "records_end",
    "train",
    "train_on_frames",
]

F64 = npt.NDArray[np.float64]
LOCAL_ENGINE = "local"


@dataclass(frozen=True)
class TrainingParams:
    """LightGBM and calibration settings; every default is deterministic."""

    seed: int = 20_261_126
    num_threads: int = 2
    num_boost_round: int = 1_000
    early_stopping_rounds: int = 50
    # Few, shallow trees: TreeSHAP reasons cost O(trees x leaves x depth^2) a row. 15 leaves
    # at depth 4 explain at 0.3x the cost of 31 unbounded leaves for ~0.003 of OOT AUC, and
    # a learning rate of 0.1 keeps half the trees of 0.05 at the same AUC
    # (benchmarks/reasons_cost.py).
    learning_rate: float = 0.1
    num_leaves: int = 15
    max_depth: int = 4
    min_data_in_leaf: int = 100
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    max_bin: int = 255
    monotone: bool = True
    holdout_fraction: float = 0.2  # of the in-time subjects; taken as 1 / round(1 / fraction)
    calibration_folds: int = 5
    ece_bins: int = 10
    pd_floor: float = 0.0003  # calibrated PDs stay within [floor, 1 - floor]

    def __post_init__(self) -> None:
        if self.num_threads < 1:
            raise ValueError("num_threads must be at least 1")
        if self.num_boost_round < 1 or self.early_stopping_rounds < 1:
            raise ValueError("num_boost_round and early_stopping_rounds must be at least 1")
        if not 0.0 <= self.pd_floor < 0.01:
            raise ValueError("pd_floor must be in [0, 0.01)")
        if self.calibration_folds < 2:
            raise ValueError("calibration_folds must be at least 2")

    def lightgbm_params(self) -> dict[str, Any]:
        """The parameters handed to ``lightgbm.train`` (recorded in the manifest)."""
        params: dict[str, Any] = {
            "objective": "binary",
            "metric": ["binary_logloss"],
            "boosting": "gbdt",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "max_depth": self.max_depth,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "lambda_l2": self.lambda_l2,
            "max_bin": self.max_bin,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "verbosity": -1,
        }
        if self.monotone:
            params["monotone_constraints"] = monotone_constraints()
            params["monotone_constraints_method"] = "basic"
        return params

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DataSummary:
    as_of_dates: tuple[date, ...]
    validation_dates: tuple[date, ...]
    horizon_months: int
    home_province: str
    retention_years: int
    rows: dict[str, int]  # fit, holdout, oot
    defaults: dict[str, int]
    fingerprints: dict[str, str]  # in_time, oot: sha256 over the rows

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["as_of_dates"] = [d.isoformat() for d in self.as_of_dates]
        out["validation_dates"] = [d.isoformat() for d in self.validation_dates]
        return out


@dataclass(frozen=True)
class TrainedModel:
    """A trained, calibrated model and everything the registry records about it."""

    booster: Any  # lightgbm.Booster, rebuilt from ``model_text`` (exactly what is saved)
    model_text: str
    calibrator: Calibrator
    calibration: CalibrationChoice
    scorecard: ScorecardConfig
    feature_names: tuple[str, ...]
    catalog_hash: str
    params: TrainingParams
    lightgbm_params: dict[str, Any]
    best_iteration: int
    data: DataSummary
    metrics: dict[str, Any]  # headline figures (OOT and holdout)
    report: dict[str, Any]  # the full evaluation, written as report.json
    seconds: float
    # How the booster was fitted: the engine and, for a distributed one, its partitioning
    # (recorded in the manifest as ``training_engine``).
    engine: dict[str, Any] = field(default_factory=lambda: {"engine": LOCAL_ENGINE})

    def raw_score(self, matrix: F64) -> F64:
        raw: F64 = self.booster.predict(matrix, raw_score=True, num_threads=self.params.num_threads)
        return raw

    def predict(self, matrix: F64) -> F64:
        return self.calibrator.predict(self.raw_score(matrix))


def train(
    store: RecordStore,
    *,
    as_of_dates: list[date],
    validation_dates: list[date],
    horizon_months: int = 12,
    params: TrainingParams | None = None,
    scorecard: ScorecardConfig = DEFAULT_SCORECARD,
    home_province: str = "33",
    retention_years: int = 5,
    fitter: BoosterFitter | None = None,
) -> TrainedModel:
    """Train on ``as_of_dates`` and evaluate out of time on the later ``validation_dates``;
    ``fitter`` fits the booster (default :func:`fit_local`)."""
    _check_dates(as_of_dates, validation_dates)
    in_time, oot = (
        training_frame(
            store,
            dates,
            horizon_months,
            home_province=home_province,
            retention_years=retention_years,
        )
        for dates in (as_of_dates, validation_dates)
    )
    return train_on_frames(
        in_time,
        oot,
        horizon_months=horizon_months,
        params=params or TrainingParams(),
        scorecard=scorecard,
        home_province=home_province,
        retention_years=retention_years,
        fitter=fitter,
    )


def _check_dates(as_of_dates: list[date], validation_dates: list[date]) -> None:
    if not as_of_dates or not validation_dates:
        raise ValueError("give at least one in-time as-of date and one validation date")
    if max(as_of_dates) >= min(validation_dates):
        raise ValueError("every validation (out-of-time) date must follow every as-of date")


_RECORDS_END = """
SELECT max(last) FROM (
    SELECT max(reported_at) AS last FROM repayment
    UNION ALL SELECT max(reported_at) FROM default_event
)
"""


def records_end(store: RecordStore) -> date | None:
    """The day the latest repayment or default record was reported (None: no records)."""
    last = store.scalar(_RECORDS_END)
    if last is None:
        return None
    return last.date() if isinstance(last, datetime) else last


def incomplete_label_dates(
    store: RecordStore, dates: list[date], horizon_months: int
) -> list[date]:
    """The as-of dates whose label window (as_of, as_of + horizon] ends after the latest
    repayment or default record was reported: their labels may miss defaults not yet on
    file."""
    end = records_end(store)
    if end is None:
        return list(dates)
    return [day for day in dates if add_months(day, horizon_months) > end]


@dataclass(frozen=True)
class FittedBooster:
    """What a fitter hands back: LightGBM's text model cut at the chosen iteration (exactly
    what the registry saves), and what the manifest records about the fit."""

    model_text: str
    best_iteration: int
    lightgbm_params: dict[str, Any]  # as handed to LightGBM
    engine: dict[str, Any]  # {"engine": name, ...engine details}


# (fit rows, holdout rows, parameters) -> the fitted booster. The holdout is for choosing the
# number of trees only; it must not be trained on.
BoosterFitter = Callable[[LabelledRows, LabelledRows, TrainingParams], FittedBooster]


def fit_local(fit: LabelledRows, holdout: LabelledRows, params: TrainingParams) -> FittedBooster:
    """``lightgbm.train`` in this process, stopping early on the holdout's log loss."""
    started = time.perf_counter()
    lgb_params = params.lightgbm_params()
    names = list(feature_names())
    train_set = lgb.Dataset(
        fit.matrix,
        label=fit.label,
        feature_name=names,
        categorical_feature=categorical_features(),
        params=lgb_params,
        free_raw_data=True,
    )
    valid_set = lgb.Dataset(holdout.matrix, label=holdout.label, reference=train_set)
    booster = lgb.train(
        lgb_params,
        train_set,
        num_boost_round=params.num_boost_round,
        valid_sets=[valid_set],
        valid_names=["holdout"],
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
    )
    best = int(booster.best_iteration) or int(booster.current_iteration())
    return FittedBooster(
        model_text=booster.model_to_string(num_iteration=best),
        best_iteration=best,
        lightgbm_params=lgb_params,
        engine={
            "engine": LOCAL_ENGINE,
            "threads": params.num_threads,
            "reproducible": True,
            "seconds": {"fit": round(time.perf_counter() - started, 3)},
        },
    )


def train_on_frames(
    in_time_frame: pl.DataFrame,
    oot_frame: pl.DataFrame,
    *,
    horizon_months: int,
    params: TrainingParams,
    scorecard: ScorecardConfig = DEFAULT_SCORECARD,
    home_province: str = "33",
    retention_years: int = 5,
    fitter: BoosterFitter | None = None,
) -> TrainedModel:
    """Train on training frames already built (``training_frame`` output); ``fitter`` fits
    the booster (default :func:`fit_local`)."""
    started = time.perf_counter()
    in_time = LabelledRows.of(in_time_frame)
    oot = LabelledRows.of(oot_frame)
    if in_time.rows == 0 or oot.rows == 0:
        raise ValueError("the in-time or the out-of-time frame is empty")
    _check_dates(in_time.frame["as_of"].to_list(), oot.frame["as_of"].to_list())
    fit_index, holdout_index = holdout_split(in_time, params.holdout_fraction, params.seed)
    fit, holdout = in_time.take(fit_index), in_time.take(holdout_index)

    fitted = (fitter or fit_local)(fit, holdout, params)
    model_text = fitted.model_text
    booster = lgb.Booster(model_str=model_text)  # exactly what the registry will save

    def raw(matrix: F64) -> F64:
        out = booster.predict(matrix, raw_score=True, num_threads=params.num_threads)
        return np.asarray(out, dtype=np.float64)

    holdout_raw = raw(holdout.matrix)
    calibrator, choice = choose_calibrator(
        holdout_raw,
        holdout.label,
        holdout.groups,
        folds=params.calibration_folds,
        seed=params.seed,
        floor=params.pd_floor,
        ece_bins=params.ece_bins,
    )
    data = DataSummary(
        as_of_dates=tuple(sorted(set(in_time.frame["as_of"].to_list()))),
        validation_dates=tuple(sorted(set(oot.frame["as_of"].to_list()))),
        horizon_months=horizon_months,
        home_province=home_province,
        retention_years=retention_years,
        rows={"fit": fit.rows, "holdout": holdout.rows, "oot": oot.rows},
        defaults={"fit": fit.defaults, "holdout": holdout.defaults, "oot": oot.defaults},
        fingerprints={"in_time": data_fingerprint(in_time), "oot": data_fingerprint(oot)},
    )
    in_time_pd = calibrator.predict(raw(in_time.matrix))
    report = build_report(
        in_time_pd=in_time_pd,
        holdout=(holdout.label, calibrator.predict(holdout_raw)),
        oot=(oot.label, calibrator.predict(raw(oot.matrix))),
        importance_gain=booster.feature_importance(importance_type="gain"),
        importance_split=booster.feature_importance(importance_type="split"),
        feature_names=feature_names(),
        scorecard=scorecard,
        calibration=choice,
        ece_bins=params.ece_bins,
    )
    # The training distribution of the score and of every feature, for monitoring (PSI of
    # served decisions); saved in the hashed report.
    report["reference_profile"] = build_profile(
        in_time.matrix, feature_names(), scores(in_time_pd, scorecard)
    )
    return TrainedModel(
        booster=booster,
        model_text=model_text,
        calibrator=calibrator,
        calibration=choice,
        scorecard=scorecard,
        feature_names=feature_names(),
        catalog_hash=catalog_hash(),
        params=params,
        lightgbm_params=fitted.lightgbm_params,
        best_iteration=fitted.best_iteration,
        data=data,
        metrics=report["summary"],
        report=report,
        seconds=time.perf_counter() - started,
        engine=fitted.engine,
    )
