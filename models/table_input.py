"""A flat table an agency brings: reading, typing and validating it (rules in models.tabular).

Every problem is a :class:`TableError` whose message names the file, the column or the line.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

__all__ = [
    "CATEGORICAL",
    "MIN_CLASS_ROWS_PER_FOLD",
    "MIN_ROWS_PER_FOLD",
    "NUMERIC",
    "Table",
    "TableError",
    "TableParams",
    "TableSchema",
    "prepare_table",
    "read_table",
]

F64 = npt.NDArray[np.float64]
Labels = npt.NDArray[np.int8]
MIN_ROWS_PER_FOLD = 20
MIN_CLASS_ROWS_PER_FOLD = 5
NUMERIC, CATEGORICAL = "numeric", "categorical"


class TableError(ValueError):
    """The table cannot be used as given; the message names the file, column or row."""


@dataclass(frozen=True)
class TableParams:
    """Cross-validation and LightGBM settings for small tables; every default deterministic."""

    seed: int = 20_261_126
    folds: int = 5
    num_threads: int = 2
    num_boost_round: int = 1_000
    early_stopping_rounds: int = 50
    inner_validation_fraction: float = 0.2
    learning_rate: float = 0.05
    num_leaves: int = 15
    lambda_l2: float = 5.0
    max_bin: int = 63
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    min_leaf_share: float = 0.01  # of the rows, within [min_leaf_floor, min_leaf_ceiling]
    min_leaf_floor: int = 10
    min_leaf_ceiling: int = 100
    max_integer_categories: int = 10
    max_text_categories: int = 100  # and at most half the rows; more is an identifier
    calibration_folds: int = 5
    pd_floor: float = 0.0003
    ece_bins: int = 10

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ValueError("folds must be at least 2")
        if self.num_threads < 1:
            raise ValueError("num_threads must be at least 1")
        if not 0.0 < self.inner_validation_fraction < 0.5:
            raise ValueError("inner_validation_fraction must be in (0, 0.5)")

    def min_data_in_leaf(self, rows: int) -> int:
        share = round(rows * self.min_leaf_share)
        return max(self.min_leaf_floor, min(self.min_leaf_ceiling, share))

    def lightgbm_params(self, rows: int) -> dict[str, Any]:
        leaf = self.min_data_in_leaf(rows)
        return {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": leaf,
            "min_data_per_group": leaf,
            "lambda_l2": self.lambda_l2,
            "max_bin": self.max_bin,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "verbosity": -1,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _model_names(columns: Sequence[str]) -> list[str]:
    """Names LightGBM accepts ([A-Za-z0-9_]), unique; the real names stay in the manifest."""
    names: list[str] = []
    for column in columns:
        base = re.sub(r"[^A-Za-z0-9_]", "_", column) or "column"
        name, suffix = base, 2
        while name in names:
            name, suffix = f"{base}_{suffix}", suffix + 1
        names.append(name)
    return names


@dataclass(frozen=True)
class TableSchema:
    """The model's columns in order, and the categories of the categorical ones."""

    columns: tuple[str, ...]
    categories: Mapping[str, tuple[str, ...]]  # column -> its values in code order

    def kind(self, column: str) -> str:
        return CATEGORICAL if column in self.categories else NUMERIC

    @property
    def categorical_indices(self) -> list[int]:
        return [i for i, column in enumerate(self.columns) if column in self.categories]

    @property
    def model_feature_names(self) -> list[str]:
        return _model_names(self.columns)

    def matrix(self, frame: pl.DataFrame) -> F64:
        """The float matrix LightGBM sees: categories as their codes, an unseen category or
        a null as NaN (missing)."""
        missing = [column for column in self.columns if column not in frame.columns]
        if missing:
            raise TableError(f"the table lacks the model's column(s) {_listing(missing)}")
        exprs = []
        for column in self.columns:
            if column in self.categories:
                codes = {value: float(code) for code, value in enumerate(self.categories[column])}
                exprs.append(
                    _as_text(pl.col(column))
                    .replace_strict(codes, default=None, return_dtype=pl.Float64)
                    .alias(column)
                )
            else:
                exprs.append(pl.col(column).cast(pl.Float64, strict=False).alias(column))
        values = frame.select(exprs).to_numpy().astype(np.float64, copy=False)
        return np.where(np.isnan(values), np.nan, values)

    def to_manifest(self) -> dict[str, Any]:
        return {
            "features": list(self.columns),
            "model_features": self.model_feature_names,
            "categorical_features": [c for c in self.columns if c in self.categories],
            "categories": {column: list(values) for column, values in self.categories.items()},
        }

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> TableSchema:
        categories = {str(k): tuple(str(v) for v in vs) for k, vs in manifest["categories"].items()}
        return cls(tuple(str(c) for c in manifest["features"]), categories)


@dataclass(frozen=True)
class Table:
    """A validated table: the feature matrix, the 0/1 label, and what was done to get them."""

    schema: TableSchema
    matrix: F64
    label: Labels
    target: str
    bad: str
    source: str
    sha256: str
    null_target_rows: int
    dropped: dict[str, str] = field(default_factory=dict)  # column -> why
    ignored: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return int(self.label.size)

    @property
    def bad_rows(self) -> int:
        return int(self.label.sum())

    def notes(self) -> str:
        parts = []
        if self.null_target_rows:
            parts.append(f"{self.null_target_rows} rows with no {self.target!r} value dropped")
        parts += [f"column {column!r} dropped: {why}" for column, why in self.dropped.items()]
        if self.ignored:
            parts.append(f"ignored as asked: {_listing(self.ignored)}")
        return "; ".join(parts)


def _listing(values: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(v) for v in list(values)[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _as_text(expr: pl.Expr) -> pl.Expr:
    """Values as the text that names a category: booleans lower case, numbers as written."""
    return expr.cast(pl.String)


def read_table(
    path: Path,
    target: str,
    bad: str,
    *,
    bad_vs_rest: bool = False,
    ignore: Sequence[str] = (),
    params: TableParams | None = None,
) -> Table:
    """Read ``path`` (UTF-8 CSV with a header) and prepare it for training."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise TableError(f"cannot read {path}: {err.strerror or err}") from None
    if not data.strip():
        raise TableError(f"{path.name} is empty")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise TableError(
            f"{path.name} is not UTF-8 text: byte 0x{data[err.start]:02x} on line {line} "
            "(save it as UTF-8)"
        ) from None
    _check_shape(path.name, text)
    try:
        frame = pl.read_csv(
            io.StringIO(text),
            infer_schema_length=None,
            schema_overrides={target: pl.String},
        )
    except (pl.exceptions.PolarsError, ValueError) as err:
        raise TableError(f"{path.name} cannot be read as CSV: {str(err).splitlines()[0]}") from None
    return prepare_table(
        frame,
        target,
        bad,
        bad_vs_rest=bad_vs_rest,
        ignore=ignore,
        params=params,
        source=path.name,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _check_shape(name: str, text: str) -> None:
    """Every line has the header's number of fields (polars would guess otherwise)."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise TableError(f"{name} is empty")
    for fields in reader:
        if fields and len(fields) != len(header):
            raise TableError(
                f"{name} cannot be read as CSV: line {reader.line_num} has {len(fields)} "
                f"fields, the header has {len(header)}"
            )


def prepare_table(
    frame: pl.DataFrame,
    target: str,
    bad: str,
    *,
    bad_vs_rest: bool = False,
    ignore: Sequence[str] = (),
    params: TableParams | None = None,
    source: str = "frame",
    sha256: str = "",
) -> Table:
    """Label, type and check a frame: the rules of :mod:`models.tabular`."""
    params = params or TableParams()
    if target not in frame.columns:
        raise TableError(
            f"{source}: no target column {target!r}; its columns are {_listing(frame.columns)}"
        )
    for column in ignore:
        if column not in frame.columns:
            raise TableError(f"cannot ignore {column!r}: no such column in {source}")
    values = frame[target].cast(pl.String).str.strip_chars()
    present = values.is_not_null() & (values != "")
    null_target_rows = int((~present).sum())
    frame, values = frame.filter(present), values.filter(present)
    distinct = sorted(set(values.to_list()))
    wanted = bad.strip()
    if wanted not in distinct:
        raise TableError(
            f"{source}: no row equal to --bad {wanted!r}; its values are {_listing(distinct)}"
        )
    if len(distinct) == 1:
        raise TableError(f"{source}: every row of target column {target!r} is bad")
    if len(distinct) > 2 and not bad_vs_rest:
        raise TableError(
            f"{source}: target column {target!r} has {len(distinct)} distinct values "
            f"({_listing(distinct)}); to treat {wanted!r} as bad and every other value as "
            "good, give --bad-vs-rest"
        )
    label = (values == wanted).to_numpy().astype(np.int8)
    _check_counts(source, int(label.size), int(label.sum()), params.folds, target, wanted)
    features = frame.drop(target, *ignore)
    schema, dropped = _plan_columns(features, params)
    if not schema.columns:
        reasons = "; ".join(f"{column}: {why}" for column, why in dropped.items())
        raise TableError(f"{source}: no usable feature column: {reasons}")
    return Table(
        schema=schema,
        matrix=schema.matrix(features),
        label=label,
        target=target,
        bad=wanted,
        source=source,
        sha256=sha256,
        null_target_rows=null_target_rows,
        dropped=dropped,
        ignored=tuple(ignore),
    )


def _check_counts(source: str, rows: int, bad_rows: int, folds: int, target: str, bad: str) -> None:
    need_rows = folds * MIN_ROWS_PER_FOLD
    need_class = folds * MIN_CLASS_ROWS_PER_FOLD
    if rows < need_rows:
        raise TableError(
            f"{source} has {rows} rows with a target; {folds}-fold cross-validation needs at "
            f"least {need_rows} (use fewer --cv folds or a larger table)"
        )
    if bad_rows < need_class:
        raise TableError(
            f"{source} has only {bad_rows} bad ({target} = {bad!r}) rows; {folds}-fold "
            f"cross-validation needs at least {need_class} (use fewer --cv folds)"
        )
    if rows - bad_rows < need_class:
        raise TableError(
            f"{source} has only {rows - bad_rows} good rows; {folds}-fold cross-validation "
            f"needs at least {need_class} (use fewer --cv folds)"
        )


def _plan_columns(frame: pl.DataFrame, params: TableParams) -> tuple[TableSchema, dict[str, str]]:
    """Which columns are features, and of which kind; why the others are dropped."""
    columns: list[str] = []
    categories: dict[str, tuple[str, ...]] = {}
    dropped: dict[str, str] = {}
    identifier_limit = min(params.max_text_categories, frame.height // 2)
    for column in frame.columns:
        series = frame[column]
        present = series.drop_nulls()
        if present.len() == 0:
            dropped[column] = "every value is null"
            continue
        distinct = present.unique()
        if distinct.len() == 1 and series.null_count() == 0:
            dropped[column] = f"constant: every row holds {str(distinct.cast(pl.String)[0])!r}"
            continue
        dtype = series.dtype
        if dtype == pl.String or dtype == pl.Boolean:
            if dtype == pl.String and distinct.len() > identifier_limit:
                dropped[column] = (
                    f"{distinct.len()} distinct texts: an identifier or free text, not a category"
                )
                continue
            categories[column] = tuple(sorted(distinct.cast(pl.String).to_list()))
        elif dtype.is_integer() and distinct.len() <= params.max_integer_categories:
            categories[column] = tuple(str(v) for v in sorted(distinct.to_list()))
        elif not dtype.is_numeric():
            dropped[column] = f"of type {dtype}, neither numbers nor categories"
            continue
        columns.append(column)
    return TableSchema(tuple(columns), categories), dropped
