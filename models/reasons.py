"""Reason codes: the features that pushed a subject's risk up, from TreeSHAP contributions.

LightGBM's ``predict(..., pred_contrib=True)`` gives each feature's exact additive
contribution to the raw score (log-odds of default) of a row. The reasons are the features
with the largest *positive* contributions (they raised the risk), at most four, largest
first, each mapped to the catalog's reason code and text. As bureaus do, when an inquiry
feature (catalog group ``inquiry``) raised the risk but none made the four, the largest such
inquiry feature is added as a fifth reason. An *absent* feature (NaN: it does not apply to
the subject's kind, or there is nothing on file for it) is never a reason, whatever its
contribution: the model uses absence to tell entities from persons, and a reason must state
a fact on the subject's file.

A *thin file* gets no reasons: nothing on file is enough to explain a score. A subject has a
thin file when all of the following hold (see :func:`thin_file_mask`):

* fewer than ``THIN_FILE_MIN_MONTHS`` (6) account-months of repayment history
  (``rep_months_reported`` absent or below 6);
* no public record: every ``pub_*_active`` count is 0 or absent and every
  ``pub_*_months_since`` is absent (none within the retention period);
* no credit inquiry in the last 90 days (``inq_count_90d`` 0 or absent).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from features.catalog import CATALOG, FeatureSpec

__all__ = [
    "INQUIRY_GROUP",
    "MAX_REASONS",
    "THIN_FILE_MIN_MONTHS",
    "Explanation",
    "Reason",
    "ReasonCoder",
    "thin_file_mask",
]

F64 = npt.NDArray[np.float64]
MAX_REASONS = 4
INQUIRY_GROUP = "inquiry"
THIN_FILE_MIN_MONTHS = 6


@dataclass(frozen=True)
class Reason:
    code: str  # the catalog's stable reason code
    description: str  # the catalog's reason text
    contribution: float  # raw-score (log-odds) contribution; > 0 raised the risk
    feature: str
    value: float  # the feature's value (never absent: absent features are no reason)


@dataclass(frozen=True)
class Explanation:
    reasons: tuple[Reason, ...]
    thin_file: bool


def _indices(specs: Sequence[FeatureSpec], wanted: Any) -> npt.NDArray[np.intp]:
    return np.array([i for i, spec in enumerate(specs) if wanted(spec)], dtype=np.intp)


def thin_file_mask(matrix: F64, specs: Sequence[FeatureSpec] = CATALOG) -> npt.NDArray[np.bool_]:
    """True for each row (catalog-ordered features, NaN = absent) with a thin file."""
    rows = np.atleast_2d(matrix)
    names = [spec.name for spec in specs]
    months = rows[:, names.index("rep_months_reported")]
    short = np.isnan(months) | (months < THIN_FILE_MIN_MONTHS)
    active = _indices(specs, lambda s: s.name.startswith("pub_") and s.name.endswith("_active"))
    since = _indices(specs, lambda s: s.name.startswith("pub_") and s.name.endswith("_since"))
    no_public = (np.nan_to_num(rows[:, active], nan=0.0) == 0).all(axis=1) & np.isnan(
        rows[:, since]
    ).all(axis=1)
    inquiries = np.nan_to_num(rows[:, names.index("inq_count_90d")], nan=0.0)
    mask: npt.NDArray[np.bool_] = short & no_public & (inquiries == 0)
    return mask


class ReasonCoder:
    """Reason codes for the rows of one LightGBM model (features in catalog order)."""

    def __init__(self, booster: Any, specs: Sequence[FeatureSpec] = CATALOG) -> None:
        if list(booster.feature_name()) != [spec.name for spec in specs]:
            raise ValueError("the model's features are not the catalog's, in catalog order")
        self.booster = booster
        self.specs = tuple(specs)
        self._inquiry_columns = _indices(self.specs, lambda s: s.group == INQUIRY_GROUP)
        self._reason_fields = [(s.reason_code, s.reason_text, s.name) for s in self.specs]

    def contributions(self, matrix: F64, *, num_threads: int = 1) -> F64:
        """Per-row, per-feature TreeSHAP contributions to the raw score (no bias column)."""
        rows = np.atleast_2d(matrix)
        contrib = self.booster.predict(rows, pred_contrib=True, num_threads=num_threads)
        out: F64 = np.asarray(contrib, dtype=np.float64)[:, : len(self.specs)]
        return out

    def reasons(self, contributions: F64, values: F64) -> tuple[Reason, ...]:
        """Reasons of one row from its contributions and feature values."""
        one = (contributions[np.newaxis, :], values[np.newaxis, :])
        return self._reasons(self.chosen(*one), *one)[0]

    def chosen(self, contributions: F64, values: F64) -> npt.NDArray[np.intp]:
        """The reasons' feature indices of many rows at once, shape ``(rows, MAX_REASONS +
        1)``, in reason order, -1 where a row has fewer: the largest positive contributions
        of present features, ties in catalog order, then the largest such inquiry feature if
        none made the first ``MAX_REASONS``. Row by row this was the batch job's Python hot
        spot; a stable sort of the whole chunk gives the same choice."""
        valid = (contributions > 0) & ~np.isnan(values)
        key = np.where(valid, -contributions, np.inf)  # invalid last; stable: ties by index
        order = np.argsort(key, axis=1, kind="stable")[:, :MAX_REASONS]
        top = np.where(np.take_along_axis(valid, order, axis=1), order, -1)
        if not self._inquiry_columns.size:
            return np.column_stack([top, np.full(len(top), -1)]).astype(np.intp)
        rows = np.arange(key.shape[0])
        inquiry_key = key[:, self._inquiry_columns]
        best = np.argmin(inquiry_key, axis=1)  # the first of equal minima: catalog order
        wanted = np.isfinite(inquiry_key[rows, best]) & ~np.isin(top, self._inquiry_columns).any(
            axis=1
        )
        fifth = np.where(wanted, self._inquiry_columns[best], -1)
        out: npt.NDArray[np.intp] = np.column_stack([top, fifth]).astype(np.intp)
        return out

    def _reasons(
        self, chosen: npt.NDArray[np.intp], contributions: F64, values: F64
    ) -> list[tuple[Reason, ...]]:
        """The reasons of each row from its row of :meth:`chosen`. The chosen features'
        contributions and values are gathered for all rows at once: per element, numpy
        scalars cost a tenth of a chunk's Python."""
        picked = np.maximum(chosen, 0)
        gathered = zip(
            chosen.tolist(),
            np.take_along_axis(contributions, picked, axis=1).tolist(),
            np.take_along_axis(values, picked, axis=1).tolist(),
            strict=True,
        )
        fields = self._reason_fields
        return [
            tuple(
                Reason(
                    code=fields[i][0],
                    description=fields[i][1],
                    contribution=contribution,
                    feature=fields[i][2],
                    value=value,
                )
                for i, contribution, value in zip(
                    indices, row_contributions, row_values, strict=True
                )
                if i >= 0
            )
            for indices, row_contributions, row_values in gathered
        ]

    def explain(self, matrix: F64, *, num_threads: int = 1) -> list[Explanation]:
        """Reasons and thin-file markers of every row; thin files get no reasons and cost
        no TreeSHAP."""
        rows = np.atleast_2d(np.asarray(matrix, dtype=np.float64))
        thin = thin_file_mask(rows, self.specs)
        thin_explanation = Explanation((), True)
        out = [thin_explanation] * rows.shape[0]
        scored = np.flatnonzero(~thin)
        if scored.size:
            values = rows[scored]
            contrib = self.contributions(values, num_threads=num_threads)
            reasons = self._reasons(self.chosen(contrib, values), contrib, values)
            for row, found in zip(scored.tolist(), reasons, strict=True):
                out[row] = Explanation(found, False)
        return out
