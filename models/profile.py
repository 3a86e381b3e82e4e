"""The reference profile: what the training data looked like, compactly, for monitoring.

At training time, for the score and for each feature, :func:`build_profile` records the
deciles of the in-time training values (tied edges merged) and the share of training rows
in each bin, with absent values (NaN) as a bin of their own. The profile is saved in the
model's report (``report.json``, hashed in the manifest), so monitoring can compute the
population stability index of served values against the training data without the data:
:func:`profile_stability`. Bins follow :func:`models.evaluation.population_stability`: a
bin holds values above its lower edge up to and including its upper edge; the PSI itself is
:func:`models.evaluation.stability_index`.

PSI bands (the usual rule of thumb): below 0.10 ``stable``, 0.10 to below 0.25
``moderate`` (investigate), 0.25 and above ``significant`` (the population has shifted).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from models.evaluation import stability_index

__all__ = [
    "PROFILE_FORMAT",
    "PSI_BANDS",
    "build_profile",
    "profile_stability",
    "psi_band",
    "variable_profile",
]

PROFILE_FORMAT = 1
PSI_BANDS = {"stable": "psi < 0.10", "moderate": "0.10 <= psi < 0.25", "significant": ">= 0.25"}
F64 = npt.NDArray[np.float64]


def psi_band(psi: float) -> str:
    """``stable`` (< 0.10), ``moderate`` (< 0.25) or ``significant``."""
    if psi < 0.10:
        return "stable"
    if psi < 0.25:
        return "moderate"
    return "significant"


def variable_profile(values: npt.ArrayLike, bins: int = 10) -> dict[str, Any]:
    """Decile edges of the present values and the shares per bin (``shares``: one per bin
    between the edges; ``missing``: the share of absent values)."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("a profile needs rows")
    present = array[~np.isnan(array)]
    if present.size:
        inner = np.unique(np.quantile(present, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
        counts = np.bincount(np.searchsorted(inner, present, side="left"), minlength=inner.size + 1)
    else:
        inner = np.empty(0)
        counts = np.zeros(1, dtype=np.int64)
    return {
        "edges": [float(e) for e in inner],
        "shares": [float(c) / array.size for c in counts],
        "missing": float(array.size - present.size) / array.size,
    }


def build_profile(
    matrix: F64, feature_names: Sequence[str], scores: npt.ArrayLike, bins: int = 10
) -> dict[str, Any]:
    """The profile of the score and of every feature (``matrix``: rows × features)."""
    if matrix.shape[1] != len(feature_names):
        raise ValueError("the matrix has another number of columns than feature names")
    return {
        "format": PROFILE_FORMAT,
        "rows": int(matrix.shape[0]),
        "bins": bins,
        "score": variable_profile(scores, bins),
        "features": {
            name: variable_profile(matrix[:, index], bins)
            for index, name in enumerate(feature_names)
        },
    }


def profile_stability(
    profile: dict[str, Any], values: npt.ArrayLike, floor: float = 1e-4
) -> dict[str, Any]:
    """PSI of ``values`` (served) against one variable's profile, with its band and bins
    (the last bin, ``missing``, holds absent values)."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("population stability needs served values")
    inner = np.asarray(profile["edges"], dtype=np.float64)
    missing = np.isnan(array)
    counts = np.bincount(
        np.searchsorted(inner, array[~missing], side="left"), minlength=inner.size + 1
    )
    edges: list[float | None] = [None, *profile["edges"], None]
    labels: list[dict[str, Any]] = [
        {"above": edges[index], "up_to": edges[index + 1], "missing": False}
        for index in range(inner.size + 1)
    ]
    labels.append({"above": None, "up_to": None, "missing": True})
    result = stability_index(
        [*profile["shares"], profile["missing"]],
        [*(float(c) / array.size for c in counts), float(missing.sum()) / array.size],
        labels,
        floor=floor,
    )
    return {"psi": result["psi"], "band": psi_band(result["psi"]), "bins": result["bins"]}
