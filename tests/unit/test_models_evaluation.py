"""Evaluation metrics, calibrators and training-data helpers on small known inputs."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from models.calibration import (
    IsotonicCalibrator,
    PlattCalibrator,
    calibrator_from_json,
    calibrator_to_json,
    choose_calibrator,
    fit_isotonic,
    fit_platt,
)
from models.data import monotone_constraints, monthly_dates
from models.evaluation import (
    calibration_table,
    discrimination,
    expected_calibration_error,
    grade_table,
    population_stability,
    roc_points,
    score_histogram,
)


def test_monthly_dates_are_month_ends() -> None:
    assert monthly_dates(date(2025, 3, 31), 4) == [
        date(2024, 12, 31),
        date(2025, 1, 31),
        date(2025, 2, 28),
        date(2025, 3, 31),
    ]
    assert monthly_dates(date(2024, 2, 29), 1) == [date(2024, 2, 29)]
    with pytest.raises(ValueError, match="last day of a month"):
        monthly_dates(date(2025, 3, 30), 2)
    with pytest.raises(ValueError):
        monthly_dates(date(2025, 3, 31), 0)


def test_categorical_features_carry_no_monotone_constraint() -> None:
    from features.catalog import CATALOG, FeatureDtype

    constraints = monotone_constraints()
    assert len(constraints) == len(CATALOG)
    for spec, constraint in zip(CATALOG, constraints, strict=True):
        expected = 0 if spec.dtype is FeatureDtype.CATEGORY else int(spec.direction)
        assert constraint == expected, spec.name


def test_discrimination_of_a_perfect_and_a_useless_ranking() -> None:
    label = np.array([0, 0, 0, 1, 1], dtype=np.int8)
    perfect = discrimination(label, np.array([0.1, 0.2, 0.3, 0.8, 0.9]))
    assert perfect["auc"] == 1.0 and perfect["gini"] == 1.0 and perfect["ks"] == 1.0
    flat = discrimination(label, np.full(5, 0.4))
    assert flat["auc"] == 0.5 and flat["ks"] == 0.0
    assert flat["brier"] == pytest.approx(np.mean((0.4 - label) ** 2))
    one_class = discrimination(np.zeros(4, dtype=np.int8), np.full(4, 0.1))
    assert one_class["auc"] is None and one_class["ks"] is None
    assert roc_points(np.zeros(4, dtype=np.int8), np.full(4, 0.1)) == {"fpr": [], "tpr": []}


def test_ks_is_the_largest_gap_between_the_cumulative_distributions() -> None:
    rng = np.random.default_rng(1)
    label = rng.integers(0, 2, 400).astype(np.int8)
    pd = np.clip(rng.normal(0.3 + 0.2 * label, 0.15), 0, 1)
    grid = np.unique(pd)
    bad = np.array([(pd[label == 1] <= t).mean() for t in grid])
    good = np.array([(pd[label == 0] <= t).mean() for t in grid])
    assert discrimination(label, pd)["ks"] == pytest.approx(np.max(good - bad))


def test_calibration_table_and_ece() -> None:
    pd = np.repeat([0.1, 0.2, 0.3, 0.4, 0.5], 20).astype(np.float64)
    label = np.zeros(100, dtype=np.int8)
    for block, defaults in enumerate((2, 4, 6, 8, 10)):  # exactly calibrated
        label[block * 20 : block * 20 + defaults] = 1
    table = calibration_table(label, pd, bins=5)
    assert [row["count"] for row in table] == [20] * 5
    assert [row["default_rate"] for row in table] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert expected_calibration_error(label, pd, bins=5) == pytest.approx(0.0)
    assert expected_calibration_error(label, pd + 0.05, bins=5) == pytest.approx(0.05)
    assert len(calibration_table(label[:3], pd[:3], bins=10)) == 3


def test_grade_table_reports_monotonicity() -> None:
    label = np.array([0, 0, 1, 0, 1, 1, 1], dtype=np.int8)
    grades = ["A", "A", "B", "B", "C", "C", "C"]
    table = grade_table(label, grades, ["A", "B", "C", "D"])
    assert [row["count"] for row in table["grades"]] == [2, 2, 3, 0]
    assert table["grades"][3]["default_rate"] is None
    assert table["default_rate_falls_from_worst_to_best"] is True
    flipped = grade_table(label, ["C", "C", "B", "B", "A", "A", "A"], ["A", "B", "C"])
    assert flipped["default_rate_falls_from_worst_to_best"] is False


def test_population_stability() -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(600, 40, 5_000).round()
    same = population_stability(base, base)
    assert same["psi"] == pytest.approx(0.0)
    assert sum(row["expected_share"] for row in same["bins"]) == pytest.approx(1.0)
    shifted = population_stability(base, base + 60)
    assert shifted["psi"] > 0.25  # a major shift by the usual rule of thumb
    json.dumps(shifted, allow_nan=False)  # open ends are None, not infinities


def test_score_histogram_counts_every_score() -> None:
    values = np.array([300, 301, 319, 320, 899, 900], dtype=np.int64)
    histogram = score_histogram(values, 300, 900, 20)
    assert sum(histogram["counts"]) == values.size
    assert histogram["counts"][0] == 3 and histogram["counts"][-1] == 2


def _calibration_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    raw = rng.normal(-3.5, 1.0, 3_000)
    label = (rng.random(3_000) < 1 / (1 + np.exp(-(raw + 0.3)))).astype(np.int8)
    groups = np.arange(3_000)
    return raw, label, groups


def test_serialised_calibrators_predict_what_sklearn_predicts() -> None:
    raw, label, _ = _calibration_data()
    probe = np.linspace(-9, 3, 500)
    isotonic = fit_isotonic(raw, label, floor=0.0)
    reference = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(raw, label)
    np.testing.assert_allclose(isotonic.predict(probe), reference.predict(probe), atol=1e-12)
    platt = fit_platt(raw, label, floor=0.0)
    logistic = LogisticRegression(C=np.inf, max_iter=1_000).fit(raw.reshape(-1, 1), label)
    np.testing.assert_allclose(
        platt.predict(probe), logistic.predict_proba(probe.reshape(-1, 1))[:, 1], atol=1e-12
    )
    for calibrator in (isotonic, platt):
        again = calibrator_from_json(calibrator_to_json(calibrator))
        assert again == calibrator
        assert np.array_equal(again.predict(probe), calibrator.predict(probe))


def test_floor_bounds_calibrated_pds() -> None:
    calibrator = IsotonicCalibrator((-1.0, 1.0), (0.0, 1.0), floor=0.001)
    assert calibrator.predict(np.array([-5.0, 5.0])).tolist() == [0.001, 0.999]
    platt = PlattCalibrator(1.0, 0.0, floor=0.001)
    assert platt.predict(np.array([-800.0, 800.0])).tolist() == [0.001, 0.999]


def test_calibrator_json_is_validated() -> None:
    with pytest.raises(ValueError, match="unknown calibration method"):
        calibrator_from_json('{"method": "pickle", "floor": 0}')
    with pytest.raises(ValueError, match="increasing"):
        calibrator_from_json(
            '{"method": "isotonic", "floor": 0, "thresholds": [2, 1], "values": [0, 1]}'
        )


def test_choice_is_made_out_of_fold_and_recorded() -> None:
    raw, label, groups = _calibration_data()
    calibrator, choice = choose_calibrator(
        raw, label, groups, folds=5, seed=1, floor=0.0003, ece_bins=10
    )
    assert choice.method == calibrator.method
    assert set(choice.out_of_fold_ece) == {"isotonic", "platt"}
    # The data are logistic in the raw score: Platt is the right model and wins out of fold
    # (in-sample, isotonic would always look better).
    assert choice.method == "platt", choice
    assert choice.rows == 3_000 and choice.defaults == int(label.sum())
    with pytest.raises(ValueError, match="defaults"):
        choose_calibrator(
            raw[:50],
            np.zeros(50, dtype=np.int8),
            groups[:50],
            folds=5,
            seed=1,
            floor=0,
            ece_bins=10,
        )
