"""Score scaling and grades: pure functions of the probability of default.

score = offset + factor · ln(odds of good), with factor = PDO / ln 2 and
offset = base_points − factor · ln(base_odds), so a subject at good:bad odds of
``base_odds`` gets ``base_points`` and every doubling of the odds adds ``pdo`` points.
Scores are rounded half up to an integer and clipped to [min_score, max_score]; a higher
score means a lower risk. Grades come straight from the PD: grade ``i`` holds the PDs
below ``grade_bands[i]`` (and at or above the band before), the last grade the rest.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DEFAULT_SCORECARD", "ScorecardConfig", "grade", "grades", "score", "scores"]

# PDs are kept this far from 0 and 1 before taking logs; the resulting scores lie far beyond
# any sensible clip range, so the clip decides them.
_PD_EPSILON = 1e-15


@dataclass(frozen=True)
class ScorecardConfig:
    """Points scaling and PD bands of the grades (validated on construction)."""

    base_points: float = 600.0
    base_odds: float = 50.0  # good:bad odds that earn base_points
    pdo: float = 20.0  # points to double the odds
    min_score: int = 300
    max_score: int = 900
    grade_bands: tuple[float, ...] = (0.005, 0.015, 0.04, 0.10)
    grade_names: tuple[str, ...] = field(default=("A", "B", "C", "D", "E"))

    def __post_init__(self) -> None:
        if not (math.isfinite(self.pdo) and self.pdo > 0):
            raise ValueError("pdo must be a positive number of points")
        if not (math.isfinite(self.base_odds) and self.base_odds > 0):
            raise ValueError("base_odds must be positive")
        if not math.isfinite(self.base_points):
            raise ValueError("base_points must be finite")
        if self.min_score >= self.max_score:
            raise ValueError("min_score must be below max_score")
        bands = self.grade_bands
        if not bands:
            raise ValueError("grade_bands must not be empty")
        if any(not (0.0 < b < 1.0) for b in bands):
            raise ValueError("grade_bands must lie strictly between 0 and 1")
        if any(later <= earlier for earlier, later in itertools.pairwise(bands)):
            raise ValueError("grade_bands must be strictly increasing")
        if len(self.grade_names) != len(bands) + 1:
            raise ValueError("grade_names needs exactly one more name than grade_bands")
        if len(set(self.grade_names)) != len(self.grade_names) or not all(self.grade_names):
            raise ValueError("grade_names must be distinct and non-empty")

    @property
    def factor(self) -> float:
        return self.pdo / math.log(2.0)

    @property
    def offset(self) -> float:
        return self.base_points - self.factor * math.log(self.base_odds)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["grade_bands"] = list(self.grade_bands)
        out["grade_names"] = list(self.grade_names)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScorecardConfig:
        return cls(
            base_points=float(data["base_points"]),
            base_odds=float(data["base_odds"]),
            pdo=float(data["pdo"]),
            min_score=int(data["min_score"]),
            max_score=int(data["max_score"]),
            grade_bands=tuple(float(b) for b in data["grade_bands"]),
            grade_names=tuple(str(g) for g in data["grade_names"]),
        )


DEFAULT_SCORECARD = ScorecardConfig()


def _checked(pd: npt.ArrayLike) -> npt.NDArray[np.float64]:
    values = np.asarray(pd, dtype=np.float64)
    if np.isnan(values).any() or (values < 0).any() or (values > 1).any():
        raise ValueError("probabilities of default must lie in [0, 1]")
    return values


def scores(pd: npt.ArrayLike, config: ScorecardConfig = DEFAULT_SCORECARD) -> npt.NDArray[np.int64]:
    """Integer points for each PD (vectorised)."""
    p = np.clip(_checked(pd), _PD_EPSILON, 1.0 - _PD_EPSILON)
    log_odds_good = np.log1p(-p) - np.log(p)
    raw = config.offset + config.factor * log_odds_good
    rounded = np.floor(np.clip(raw, config.min_score, config.max_score) + 0.5)
    return rounded.astype(np.int64)


def score(pd: float, config: ScorecardConfig = DEFAULT_SCORECARD) -> int:
    """Integer points for one PD."""
    return int(scores(np.array([pd]), config)[0])


def grades(pd: npt.ArrayLike, config: ScorecardConfig = DEFAULT_SCORECARD) -> list[str]:
    """The grade of each PD (vectorised)."""
    index = np.searchsorted(np.asarray(config.grade_bands), _checked(pd), side="right")
    return [config.grade_names[int(i)] for i in np.atleast_1d(index)]


def grade(pd: float, config: ScorecardConfig = DEFAULT_SCORECARD) -> str:
    """The grade of one PD."""
    return grades(np.array([pd]), config)[0]
