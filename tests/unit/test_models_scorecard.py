"""Score scaling and grades: fixed points, validation, and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.scorecard import DEFAULT_SCORECARD, ScorecardConfig, grade, grades, score, scores

PD = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def test_anchor_points() -> None:
    config = DEFAULT_SCORECARD
    assert config.factor == pytest.approx(20 / math.log(2))
    assert config.offset == pytest.approx(600 - 20 / math.log(2) * math.log(50))
    assert score(1 / 51) == 600  # good:bad odds of 50:1
    assert score(1 / 101) == 620  # odds doubled (100:1): + PDO
    assert score(1 / 26) == 580  # odds halved (25:1): − PDO
    assert score(1 / 201) == 640


def test_clipping_and_extremes() -> None:
    assert score(0.0) == 900
    assert score(1e-9) == 900
    assert score(1.0) == 300
    assert score(0.999999) == 300
    assert scores(np.array([0.0, 0.5, 1.0])).tolist() == [900, round(DEFAULT_SCORECARD.offset), 300]


def test_out_of_range_pd_is_refused() -> None:
    for bad in (-0.01, 1.01, float("nan")):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            score(bad)
        with pytest.raises(ValueError):
            grade(bad)


def test_grade_bands_are_half_open() -> None:
    assert [grade(p) for p in (0.0, 0.00499, 0.005, 0.0149, 0.015, 0.0399, 0.04, 0.0999)] == [
        "A",
        "A",
        "B",
        "B",
        "C",
        "C",
        "D",
        "D",
    ]
    assert grade(0.10) == "E" and grade(1.0) == "E"
    assert grades(np.array([0.001, 0.2])) == ["A", "E"]


@pytest.mark.parametrize(
    "changes",
    [
        {"grade_bands": (0.01, 0.01, 0.04, 0.1)},
        {"grade_bands": (0.04, 0.01, 0.05, 0.1)},
        {"grade_bands": (0.0, 0.01, 0.05, 0.1)},
        {"grade_bands": (0.01, 0.05, 0.1, 1.0)},
        {"grade_bands": (0.01, 0.05, 0.1)},  # one name too many
        {"grade_names": ("A", "B", "C", "D", "D")},
        {"pdo": 0.0},
        {"base_odds": -1.0},
        {"min_score": 900, "max_score": 300},
    ],
)
def test_invalid_configs_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ScorecardConfig(**changes)  # type: ignore[arg-type]


def test_config_round_trips_through_a_dict() -> None:
    config = ScorecardConfig(
        pdo=40, base_odds=20, grade_bands=(0.01, 0.1), grade_names=("X", "Y", "Z")
    )
    assert ScorecardConfig.from_dict(config.to_dict()) == config
    assert grade(0.05, config) == "Y"


@given(PD, PD)
def test_score_is_monotone_non_increasing_in_pd(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert score(low) >= score(high)
    assert "ABCDE".index(grade(low)) <= "ABCDE".index(grade(high))


@given(st.lists(PD, min_size=1, max_size=50))
def test_scores_are_clipped_integers_matching_the_scalar_form(pds: list[float]) -> None:
    vector = scores(np.array(pds))
    assert vector.dtype == np.int64
    assert ((vector >= 300) & (vector <= 900)).all()
    assert vector.tolist() == [score(p) for p in pds]


@given(st.floats(min_value=1e-6, max_value=1 - 1e-6))
def test_score_follows_the_log_odds_formula_inside_the_range(pd: float) -> None:
    exact = DEFAULT_SCORECARD.offset + DEFAULT_SCORECARD.factor * math.log((1 - pd) / pd)
    expected = min(max(exact, 300), 900)
    assert abs(score(pd) - expected) <= 0.5 + 1e-9


@given(
    st.lists(st.floats(min_value=1e-4, max_value=0.99), min_size=1, max_size=6, unique=True),
    st.integers(min_value=1, max_value=200),
)
def test_valid_bands_are_accepted_and_grades_follow_them(bands: list[float], pdo: int) -> None:
    ordered = tuple(sorted(bands))
    names = tuple(f"G{i}" for i in range(len(ordered) + 1))
    config = ScorecardConfig(pdo=float(pdo), grade_bands=ordered, grade_names=names)
    for i, band in enumerate(ordered):
        assert grade(band, config) == names[i + 1]  # a band's edge belongs to the next grade
