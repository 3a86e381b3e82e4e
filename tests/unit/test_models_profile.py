"""The reference profile and the PSI of served values against it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.evaluation import population_stability
from models.profile import build_profile, profile_stability, psi_band, variable_profile


def test_bands() -> None:
    assert [psi_band(v) for v in (0.0, 0.0999, 0.10, 0.2499, 0.25, 3.0)] == [
        "stable",
        "stable",
        "moderate",
        "moderate",
        "significant",
        "significant",
    ]


def test_a_sample_like_the_reference_is_stable_and_a_shift_lands_in_its_band() -> None:
    rng = np.random.default_rng(7)
    reference = rng.normal(0.0, 1.0, 50_000)
    profile = variable_profile(reference)
    assert len(profile["edges"]) == 9 and profile["missing"] == 0.0
    assert sum(profile["shares"]) == pytest.approx(1.0)
    same = profile_stability(profile, rng.normal(0.0, 1.0, 20_000))
    moderate = profile_stability(profile, rng.normal(0.4, 1.0, 20_000))
    significant = profile_stability(profile, rng.normal(1.0, 1.0, 20_000))
    assert same["band"] == "stable" and same["psi"] < 0.01
    assert moderate["band"] == "moderate", moderate["psi"]
    assert significant["band"] == "significant", significant["psi"]
    # The same bins and formula as the evaluation's PSI on raw data (its missing bin aside).
    served = rng.normal(0.4, 1.0, 20_000)
    direct = population_stability(reference, served)
    assert profile_stability(profile, served)["psi"] == pytest.approx(direct["psi"])


def test_absent_values_have_their_own_bin() -> None:
    reference = np.array([1.0, 2.0, 3.0, np.nan] * 250)
    profile = variable_profile(reference)
    assert profile["missing"] == pytest.approx(0.25)
    all_missing = profile_stability(profile, np.full(100, np.nan))
    assert all_missing["band"] == "significant"
    assert all_missing["bins"][-1]["missing"] is True
    assert all_missing["bins"][-1]["actual_share"] == 1.0
    assert profile_stability(profile, reference)["psi"] == pytest.approx(0.0)
    empty = variable_profile(np.full(10, np.nan))
    assert empty["edges"] == [] and empty["missing"] == 1.0


def test_build_profile_is_json_and_covers_score_and_features() -> None:
    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(1_000, 3))
    matrix[::3, 1] = np.nan
    profile = build_profile(matrix, ["a", "b", "c"], rng.integers(300, 900, 1_000))
    assert set(profile["features"]) == {"a", "b", "c"} and profile["rows"] == 1_000
    assert profile["features"]["b"]["missing"] == pytest.approx(334 / 1_000)
    json.dumps(profile, allow_nan=False)
    with pytest.raises(ValueError):
        build_profile(matrix, ["a", "b"], np.zeros(1_000))
