"""Model evaluation: discrimination, calibration, stability, grades.

Ranking metrics come from scikit-learn (``roc_auc_score``, ``roc_curve``,
``brier_score_loss``); KS is the largest gap between the ROC curve and the diagonal
(max TPR − FPR), Gini = 2·AUC − 1. Calibration is judged on equal-count bins ordered by
predicted PD (deciles by default): PDs of a credit portfolio crowd into the first few per
cent, so equal-width bins over [0, 1] would put nearly everyone in one bin. The expected
calibration error is the count-weighted mean of |mean PD − observed default rate| over those
bins. Every function takes labels (1 = default) and PDs as numpy arrays.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import brier_score_loss, roc_auc_score, roc_curve

__all__ = [
    "calibration_table",
    "discrimination",
    "expected_calibration_error",
    "grade_table",
    "population_stability",
    "roc_points",
    "score_histogram",
    "stability_index",
]

F64 = npt.NDArray[np.float64]
Labels = npt.NDArray[np.integer[Any]]


def _both_classes(label: Labels) -> bool:
    return 0 < int(label.sum()) < label.size


def _bins(pd: F64, bins: int) -> list[npt.NDArray[np.intp]]:
    """Row indices of ``bins`` equal-count groups by increasing PD (ties kept in row order)."""
    order = np.argsort(pd, kind="stable")
    return [chunk for chunk in np.array_split(order, min(bins, max(pd.size, 1))) if chunk.size]


def calibration_table(label: Labels, pd: F64, bins: int = 10) -> list[dict[str, float | int]]:
    """Per equal-count bin: rows, defaults, mean PD, observed default rate, PD range."""
    rows: list[dict[str, float | int]] = []
    for number, chunk in enumerate(_bins(pd, bins), start=1):
        rows.append(
            {
                "bin": number,
                "count": int(chunk.size),
                "defaults": int(label[chunk].sum()),
                "mean_pd": float(pd[chunk].mean()),
                "default_rate": float(label[chunk].mean()),
                "min_pd": float(pd[chunk].min()),
                "max_pd": float(pd[chunk].max()),
            }
        )
    return rows


def expected_calibration_error(label: Labels, pd: F64, bins: int = 10) -> float:
    """Count-weighted mean |mean PD − default rate| over equal-count PD bins."""
    if pd.size == 0:
        raise ValueError("no rows to measure calibration on")
    total = 0.0
    for chunk in _bins(pd, bins):
        total += chunk.size * abs(float(pd[chunk].mean()) - float(label[chunk].mean()))
    return total / pd.size


def discrimination(label: Labels, pd: F64) -> dict[str, float | None]:
    """AUC, Gini, KS (None when only one class is present) and the Brier score."""
    brier = float(brier_score_loss(label, pd, labels=[0, 1]))
    if not _both_classes(label):
        return {"auc": None, "gini": None, "ks": None, "brier": brier}
    auc = float(roc_auc_score(label, pd))
    fpr, tpr, _ = roc_curve(label, pd)
    return {"auc": auc, "gini": 2.0 * auc - 1.0, "ks": float(np.max(tpr - fpr)), "brier": brier}


def roc_points(label: Labels, pd: F64, points: int = 200) -> dict[str, list[float]]:
    """The ROC curve, thinned to at most ``points`` points (ends kept), for plotting."""
    if not _both_classes(label):
        return {"fpr": [], "tpr": []}
    fpr, tpr, _ = roc_curve(label, pd)
    if fpr.size > points:
        keep = np.unique(np.linspace(0, fpr.size - 1, points).round().astype(np.intp))
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": [float(v) for v in fpr], "tpr": [float(v) for v in tpr]}


def grade_table(label: Labels, grades: Sequence[str], names: Sequence[str]) -> dict[str, Any]:
    """Count, defaults and default rate per grade, and whether the default rate falls (never
    rises) from the worst grade to the best over the grades that hold anyone."""
    grade_array = np.asarray(grades)
    rows: list[dict[str, Any]] = []
    for name in names:
        mask = grade_array == name
        count = int(mask.sum())
        defaults = int(label[mask].sum())
        rows.append(
            {
                "grade": name,
                "count": count,
                "defaults": defaults,
                "default_rate": defaults / count if count else None,
            }
        )
    rates = [float(row["default_rate"]) for row in rows if row["default_rate"] is not None]
    monotone = all(better <= worse for better, worse in itertools.pairwise(rates))
    return {"grades": rows, "default_rate_falls_from_worst_to_best": monotone}


def score_histogram(
    values: npt.NDArray[np.int64], low: int, high: int, width: int = 20
) -> dict[str, list[int]]:
    """Counts of scores in bands of ``width`` points from ``low`` to ``high`` (inclusive)."""
    edges = np.arange(low, high + width, width)
    edges[-1] = high + 1  # the top band includes the maximum score
    counts, _ = np.histogram(values, bins=edges)
    return {"edges": [int(e) for e in edges], "counts": [int(c) for c in counts]}


def population_stability(
    expected: npt.NDArray[np.int64] | F64,
    actual: npt.NDArray[np.int64] | F64,
    bins: int = 10,
    floor: float = 1e-4,
) -> dict[str, Any]:
    """Population stability index of ``actual`` against ``expected`` over the expected
    distribution's deciles (tied edges merged; a bin holds values above its lower edge up to
    and including its upper edge); shares floored at ``floor``."""
    base = np.asarray(expected, dtype=np.float64)
    new = np.asarray(actual, dtype=np.float64)
    if base.size == 0 or new.size == 0:
        raise ValueError("population stability needs rows in both distributions")
    inner = np.unique(np.quantile(base, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    base_bin = np.searchsorted(inner, base, side="left")
    new_bin = np.searchsorted(inner, new, side="left")
    edges: list[float | None] = [None, *[float(e) for e in inner], None]  # None: open end
    slots = range(inner.size + 1)
    return stability_index(
        [float(np.mean(base_bin == index)) for index in slots],
        [float(np.mean(new_bin == index)) for index in slots],
        [{"above": edges[index], "up_to": edges[index + 1]} for index in slots],
        floor=floor,
    )


def stability_index(
    expected_shares: Sequence[float],
    actual_shares: Sequence[float],
    labels: Sequence[dict[str, Any]],
    floor: float = 1e-4,
) -> dict[str, Any]:
    """The population stability index over bins whose shares are already known:
    sum of (a − e)·ln(a / e), each share floored at ``floor``; ``labels`` (one per bin)
    describe the bins in the table."""
    if not len(expected_shares) == len(actual_shares) == len(labels):
        raise ValueError("expected shares, actual shares and labels must be as many")
    table = []
    psi = 0.0
    for label, expected_share, actual_share in zip(
        labels, expected_shares, actual_shares, strict=True
    ):
        e = max(float(expected_share), floor)
        a = max(float(actual_share), floor)
        part = (a - e) * float(np.log(a / e))
        psi += part
        table.append({**label, "expected_share": e, "actual_share": a, "psi": part})
    return {"psi": psi, "bins": table}
