"""Training data for the model: dates, matrices in catalog order, fingerprints, splits."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
from sklearn.model_selection import StratifiedGroupKFold

from features.catalog import CATALOG, FeatureDtype, feature_names
from features.pipeline import KEY, TYPE
from features.training import add_months

__all__ = [
    "LabelledRows",
    "categorical_features",
    "data_fingerprint",
    "feature_matrix",
    "holdout_split",
    "monotone_constraints",
    "monthly_dates",
]

F64 = npt.NDArray[np.float64]
_KEY_COLUMNS = (TYPE, KEY, "as_of", "label")


def monthly_dates(end: date, count: int) -> list[date]:
    """``count`` consecutive month-end dates, the last being ``end`` (itself a month end)."""
    if count < 1:
        raise ValueError("count must be at least 1")
    if (end + timedelta(days=1)).day != 1:
        raise ValueError(f"{end} is not the last day of a month")
    first_of_next = end + timedelta(days=1)
    return [
        add_months(first_of_next, -back) - timedelta(days=1) for back in range(count - 1, -1, -1)
    ]


def categorical_features() -> list[str]:
    return [spec.name for spec in CATALOG if spec.dtype is FeatureDtype.CATEGORY]


def monotone_constraints() -> list[int]:
    """Each feature's expected direction of risk; none for categorical features (LightGBM
    refuses monotone constraints on them)."""
    return [0 if spec.dtype is FeatureDtype.CATEGORY else int(spec.direction) for spec in CATALOG]


def feature_matrix(frame: pl.DataFrame) -> F64:
    """The catalog's columns of ``frame`` as a C-ordered float64 matrix, NaN = absent (the
    layout of :class:`features.store.FeatureVector`)."""
    names = list(feature_names())
    matrix = frame.select(pl.col(names).cast(pl.Float64)).to_numpy()
    return np.ascontiguousarray(matrix, dtype=np.float64)


@dataclass(frozen=True)
class LabelledRows:
    """Rows of a training frame ready for LightGBM, in canonical order."""

    frame: pl.DataFrame  # TYPE, KEY, as_of, catalog features, label; sorted
    matrix: F64
    label: npt.NDArray[np.int8]
    groups: npt.NDArray[Any]  # subject keys, to keep a subject's rows on one side of a split

    @classmethod
    def of(cls, frame: pl.DataFrame) -> LabelledRows:
        ordered = frame.select(*_KEY_COLUMNS[:3], *feature_names(), "label").sort(
            "as_of", TYPE, KEY
        )
        return cls(
            ordered,
            feature_matrix(ordered),
            ordered["label"].cast(pl.Int8).to_numpy(),
            ordered[KEY].to_numpy(),
        )

    @property
    def rows(self) -> int:
        return self.frame.height

    @property
    def defaults(self) -> int:
        return int(self.label.sum())

    def take(self, index: npt.NDArray[np.intp]) -> LabelledRows:
        return LabelledRows(
            self.frame[index], self.matrix[index], self.label[index], self.groups[index]
        )


def data_fingerprint(rows: LabelledRows) -> str:
    """sha256 over the rows in canonical order (as_of, subject type, subject key): a JSON
    header naming the columns and the row count, then one line per row
    ``as_of<TAB>subject_type<TAB>subject_key<TAB>label``, then every row's features as
    little-endian float64 in catalog order (all NaNs as one bit pattern)."""
    frame = rows.frame
    digest = hashlib.sha256()
    header = {"columns": [*_KEY_COLUMNS, *feature_names()], "rows": frame.height}
    digest.update(json.dumps(header, sort_keys=True).encode() + b"\n")
    lines = frame.select(
        pl.concat_str(
            [
                pl.col("as_of").cast(pl.String),
                pl.col(TYPE),
                pl.col(KEY),
                pl.col("label").cast(pl.String),
            ],
            separator="\t",
        )
    ).to_series()
    digest.update(("\n".join(lines.to_list()) + "\n").encode("utf-8"))
    values = np.where(np.isnan(rows.matrix), np.nan, rows.matrix).astype("<f8", copy=False)
    digest.update(np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()


def holdout_split(
    rows: LabelledRows, fraction: float, seed: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """(fit rows, holdout rows): a seeded, default-stratified random ``fraction`` of the
    subjects goes to the holdout with all its rows, so no subject is on both sides."""
    if not 0.0 < fraction < 0.5:
        raise ValueError("holdout fraction must be in (0, 0.5)")
    folds = round(1.0 / fraction)
    if rows.defaults < folds:
        raise ValueError(
            f"the in-time data has {rows.defaults} defaults; need at least {folds} to hold "
            "some out for early stopping and calibration"
        )
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    fit, holdout = next(splitter.split(rows.matrix, rows.label, rows.groups))
    return np.sort(fit), np.sort(holdout)
