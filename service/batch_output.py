"""The batch job's output rows: one per decided subject, in :data:`OUTPUT_SCHEMA`.

A chunk's frame is built column by column: the nested reasons and warnings as Arrow list
arrays from flat value columns and offsets. Building it from one dict per row (polars
``from_dicts`` on nested lists of structs) cost about as much as the rest of finishing a
chunk apart from its log entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
import pyarrow as pa

from models.decisions import SubjectDecision

__all__ = ["OUTPUT_SCHEMA", "output_frame"]

_REASON = {"code": pl.String(), "feature": pl.String(), "contribution": pl.Float64()}
_WARNING = {
    "code": pl.String(),
    "severity": pl.String(),
    "since": pl.Date(),
    "via_role": pl.String(),
}

OUTPUT_SCHEMA: dict[str, pl.DataType] = {
    "subject_type": pl.String(),
    "subject_key": pl.String(),
    "decision_id": pl.String(),
    "features_as_of": pl.Date(),
    "score": pl.Int64(),
    "probability_of_default": pl.Float64(),
    "grade": pl.String(),
    "thin_file": pl.Boolean(),
    "reasons": pl.List(pl.Struct(_REASON)),
    "warnings": pl.List(pl.Struct(_WARNING)),
    "model_version": pl.String(),
}

# The Arrow types of the nested fields, from the polars schema (so that a field with no
# values yet, or only nulls, still gets its type).
_ARROW_TYPES = {
    name: field.type
    for fields in (_REASON, _WARNING)
    for name, field in zip(fields, pl.DataFrame(schema=fields).to_arrow().schema, strict=True)
}


def _lists(name: str, offsets: list[int], fields: dict[str, list[Any]]) -> pl.Series:
    values = pa.StructArray.from_arrays(
        [pa.array(column, type=_ARROW_TYPES[field]) for field, column in fields.items()],
        names=list(fields),
    )
    array = pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), values)
    series = pl.Series(name, array)
    return series.cast(OUTPUT_SCHEMA[name])


def output_frame(decided: Sequence[SubjectDecision], decision_ids: Sequence[str]) -> pl.DataFrame:
    """The output rows of ``decided``, the i-th with ``decision_ids[i]``."""
    if len(decided) != len(decision_ids):
        raise ValueError("one decision id per decided subject")
    reasons: dict[str, list[Any]] = {field: [] for field in _REASON}
    warnings: dict[str, list[Any]] = {field: [] for field in _WARNING}
    reason_offsets, warning_offsets = [0], [0]
    for item in decided:
        for reason in item.decision.reasons:
            reasons["code"].append(reason.code)
            reasons["feature"].append(reason.feature)
            reasons["contribution"].append(reason.contribution)
        reason_offsets.append(len(reasons["code"]))
        for flag in item.warnings:
            warnings["code"].append(flag.code)
            warnings["severity"].append(flag.severity.value)
            warnings["since"].append(flag.since)
            warnings["via_role"].append(None if flag.via is None else flag.via.role)
        warning_offsets.append(len(warnings["code"]))
    columns = {
        "subject_type": [item.subject_type for item in decided],
        "subject_key": [item.subject_key for item in decided],
        "decision_id": list(decision_ids),
        "features_as_of": [item.features_as_of for item in decided],
        "score": [item.decision.score for item in decided],
        "probability_of_default": [item.decision.probability_of_default for item in decided],
        "grade": [item.decision.grade for item in decided],
        "thin_file": [item.decision.thin_file for item in decided],
        "model_version": [item.decision.model_version for item in decided],
    }
    frame = pl.DataFrame(
        columns, schema={name: OUTPUT_SCHEMA[name] for name in columns}
    ).with_columns(
        _lists("reasons", reason_offsets, reasons),
        _lists("warnings", warning_offsets, warnings),
    )
    return frame.select(list(OUTPUT_SCHEMA))
