"""Calibration of LightGBM's raw score (log-odds margin) to a probability of default.

Both candidates are fitted with scikit-learn: isotonic regression (``IsotonicRegression``)
and Platt scaling (an unpenalised one-feature ``LogisticRegression``). The winner is the
one with the lower expected calibration error on *out-of-fold* predictions over the
calibration split (stratified, subject-grouped folds): judging each on the rows it was
fitted to would always favour isotonic, which fits its own bins. The winner is then refitted
on the whole split.

A fitted calibrator is kept as plain numbers (isotonic thresholds and values, or Platt's
coefficient and intercept) and serialised as JSON; evaluating it is the same function
scikit-learn evaluates (linear interpolation clipped at the ends; the logistic function),
checked against scikit-learn by the tests. PDs are kept within [floor, 1 − floor].
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold

from models.evaluation import expected_calibration_error

__all__ = [
    "CalibrationChoice",
    "Calibrator",
    "IsotonicCalibrator",
    "PlattCalibrator",
    "calibrator_from_json",
    "choose_calibrator",
    "fit_isotonic",
    "fit_platt",
]

Method = Literal["isotonic", "platt"]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class IsotonicCalibrator:
    thresholds: tuple[float, ...]  # raw scores, increasing
    values: tuple[float, ...]  # PDs at the thresholds, non-decreasing
    floor: float

    method: Method = "isotonic"

    def predict(self, raw: npt.ArrayLike) -> F64:
        x = np.asarray(raw, dtype=np.float64)
        p = np.interp(x, np.asarray(self.thresholds), np.asarray(self.values))
        clipped: F64 = np.clip(p, self.floor, 1.0 - self.floor)
        return clipped

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "floor": self.floor,
            "thresholds": list(self.thresholds),
            "values": list(self.values),
        }


@dataclass(frozen=True)
class PlattCalibrator:
    coefficient: float  # > 0: a higher raw score is a higher PD
    intercept: float
    floor: float

    method: Method = "platt"

    def predict(self, raw: npt.ArrayLike) -> F64:
        x = np.asarray(raw, dtype=np.float64)
        z = self.coefficient * x + self.intercept
        p: F64 = np.exp(-np.logaddexp(0.0, -z))  # the logistic function, without overflow
        return np.clip(p, self.floor, 1.0 - self.floor)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "floor": self.floor,
            "coefficient": self.coefficient,
            "intercept": self.intercept,
        }


Calibrator = IsotonicCalibrator | PlattCalibrator


def calibrator_to_json(calibrator: Calibrator) -> str:
    return json.dumps(calibrator.to_dict(), indent=1, sort_keys=True) + "\n"


def calibrator_from_json(text: str) -> Calibrator:
    data = json.loads(text)
    method = data.get("method")
    floor = float(data["floor"])
    if method == "isotonic":
        thresholds = tuple(float(v) for v in data["thresholds"])
        values = tuple(float(v) for v in data["values"])
        if len(thresholds) != len(values) or not thresholds:
            raise ValueError("isotonic calibrator needs as many values as thresholds")
        if np.any(np.diff(thresholds) < 0) or np.any(np.diff(values) < 0):
            raise ValueError("isotonic calibrator thresholds and values must be increasing")
        return IsotonicCalibrator(thresholds, values, floor)
    if method == "platt":
        return PlattCalibrator(float(data["coefficient"]), float(data["intercept"]), floor)
    raise ValueError(f"unknown calibration method {method!r}")


def fit_isotonic(raw: F64, label: npt.NDArray[np.int8], floor: float) -> IsotonicCalibrator:
    model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    model.fit(raw, label.astype(np.float64))
    return IsotonicCalibrator(
        tuple(float(v) for v in model.X_thresholds_),
        tuple(float(v) for v in model.y_thresholds_),
        floor,
    )


def fit_platt(raw: F64, label: npt.NDArray[np.int8], floor: float) -> PlattCalibrator:
    model = LogisticRegression(C=np.inf, solver="lbfgs", max_iter=1_000)
    model.fit(raw.reshape(-1, 1), label)
    return PlattCalibrator(float(model.coef_[0, 0]), float(model.intercept_[0]), floor)


@dataclass(frozen=True)
class CalibrationChoice:
    method: Method
    out_of_fold_ece: dict[str, float | None]  # None: the method was not usable
    folds: int
    rows: int
    defaults: int
    floor: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "selection": "lowest expected calibration error on out-of-fold predictions",
            "out_of_fold_ece": self.out_of_fold_ece,
            "folds": self.folds,
            "rows": self.rows,
            "defaults": self.defaults,
            "floor": self.floor,
        }


def choose_calibrator(
    raw: F64,
    label: npt.NDArray[np.int8],
    groups: npt.NDArray[Any],
    *,
    folds: int,
    seed: int,
    floor: float,
    ece_bins: int,
) -> tuple[Calibrator, CalibrationChoice]:
    """Fit isotonic and Platt on the calibration split; keep the better calibrated one."""
    defaults = int(label.sum())
    if defaults < folds or label.size - defaults < folds:
        raise ValueError(
            f"the calibration split has {defaults} defaults in {label.size} rows; "
            f"need at least {folds} of each class (more history or more dates)"
        )
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    out_of_fold = {"isotonic": np.empty_like(raw), "platt": np.empty_like(raw)}
    platt_usable = True
    for fit_rows, test_rows in splitter.split(raw, label, groups):
        iso = fit_isotonic(raw[fit_rows], label[fit_rows], floor)
        out_of_fold["isotonic"][test_rows] = iso.predict(raw[test_rows])
        platt = fit_platt(raw[fit_rows], label[fit_rows], floor)
        platt_usable &= platt.coefficient > 0
        out_of_fold["platt"][test_rows] = platt.predict(raw[test_rows])
    ece: dict[str, float | None] = {
        "isotonic": expected_calibration_error(label, out_of_fold["isotonic"], ece_bins),
        "platt": expected_calibration_error(label, out_of_fold["platt"], ece_bins)
        if platt_usable
        else None,
    }
    platt_ece = ece["platt"]
    iso_ece = ece["isotonic"]
    assert iso_ece is not None
    method: Method = "platt" if platt_ece is not None and platt_ece < iso_ece else "isotonic"
    calibrator: Calibrator
    if method == "platt":
        calibrator = fit_platt(raw, label, floor)
        if calibrator.coefficient <= 0:  # usable on every fold but not on the whole: rare
            method, calibrator = "isotonic", fit_isotonic(raw, label, floor)
    else:
        calibrator = fit_isotonic(raw, label, floor)
    choice = CalibrationChoice(method, ece, folds, int(label.size), defaults, floor)
    return calibrator, choice
