"""Field-by-field validation of reported rows, in bulk with polars.

``validate_frame`` takes a frame of one table's file columns (strings as read from
CSV, or typed columns from Parquet or the generator) and splits it into typed rows
ready to store and rejected rows, each with the first field that failed and a
reason code. Identifier checks run once per distinct value with the strict
validators of :mod:`records.identifiers`; everything else is vectorised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import polars as pl

from records.identifiers import resident_id_rejection, uscc_rejection
from records.pseudonym import Pseudonymiser
from records.regions import PROVINCE_CODES
from records.tables import FieldKind, FieldSpec, TableSpec

__all__ = ["REASONS", "ROW_COLUMN", "ValidationResult", "parse_field", "validate_frame"]

ROW_COLUMN = "_row"
REASON_COLUMN = "_reason"
FIELD_COLUMN = "_field"

# Reason codes (stable; tests, docs and the dirty generator rely on them) and their texts.
REASONS: dict[str, str] = {
    "missing_field": "a required field is empty",
    "too_long": "the value is longer than allowed",
    "invalid_text": "the text contains control characters",
    "invalid_code": "not a reporter code (upper-case letters, digits, '_', '-', '.')",
    "invalid_identifier": "not a valid identifier",
    "invalid_region": "not a 6-digit division code of a real province",
    "invalid_enum": "not one of the allowed values",
    "invalid_date": "not a real calendar date in the expected format",
    "date_out_of_range": "date before 1900-01-01",
    "date_after_report": "event date is after the record's reported_at",
    "invalid_timestamp": "not an ISO 8601 timestamp (YYYY-MM-DDTHH:MM:SS[.ffffff][Z|±HH:MM])",
    "invalid_amount": "not a non-negative amount with at most 2 decimals",
    "invalid_integer": "not an integer in the allowed range",
    "invalid_share": "not a fraction in (0, 1] with at most 4 decimals",
    "inconsistent_fields": "fields contradict each other",
    "unknown_subject": "the subject is not known to the store",
    "unknown_account": "the account is not known to the store",
    "conflicting_version": "same record and reported_at as a stored version, different content",
    "malformed_row": "the row does not have the header's number of fields",
    "invalid_encoding": "the line is not valid UTF-8 (CSV)",
    "line_too_long": "the line is longer than the line limit, ingest.csv_block_bytes (CSV)",
}

_EARLIEST = date(1900, 1, 1)
_DATE_RE = r"^\d{4}-\d{2}-\d{2}$"
_MONTH_RE = r"^\d{4}-\d{2}$"
_TIMESTAMP_RE = r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})?$"
_AMOUNT_RE = r"^\d{1,16}(\.\d{1,2})?$"
_SHARE_RE = r"^(0(\.\d{1,4})?|1(\.0{1,4})?)$"
_INTEGER_RE = r"^\d{1,9}$"
_CODE_RE = r"^[A-Z0-9][A-Z0-9_.\-]*$"
_CONTROL_RE = r"[\x00-\x1f\x7f]"
_REGION_RE = r"^\d{6}$"


@dataclass(frozen=True)
class ValidationResult:
    valid: pl.DataFrame  # stored columns plus ROW_COLUMN
    rejected: pl.DataFrame  # ROW_COLUMN, field, reason, detail


def _err(condition: pl.Expr, reason: str) -> pl.Expr:
    return pl.when(condition).then(pl.lit(reason))


def _present(col: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.String:
        return col.is_not_null() & (col != "")
    return col.is_not_null()


def parse_field(spec: FieldSpec, dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr]:
    """(typed value, reason code or null) for one field; values of rejected rows are ignored."""
    col = pl.col(spec.name)
    kind = spec.kind
    if kind is FieldKind.DATE or kind is FieldKind.MONTH:
        return _parse_date(col, dtype, monthly=kind is FieldKind.MONTH)
    if kind is FieldKind.TIMESTAMP:
        return _parse_timestamp(col, dtype)
    if kind is FieldKind.AMOUNT and dtype.is_numeric():
        value = col.cast(pl.Float64)
        ok = (
            value.is_finite()
            & (value >= 0)
            & (value < 1e16)
            & ((value - value.round(2)).abs() < 1e-6)
        )
        typed = value.round(2).cast(pl.Decimal(18, 2), strict=False)
        return typed, _err(~ok, "invalid_amount")
    if kind is FieldKind.SHARE and dtype.is_numeric():
        value = col.cast(pl.Float64)
        ok = (value > 0) & (value <= 1) & ((value - value.round(4)).abs() < 1e-9)
        return value.round(4).cast(pl.Decimal(5, 4), strict=False), _err(~ok, "invalid_share")
    if kind is FieldKind.INTEGER and dtype.is_integer():
        ok = col.is_between(spec.minimum, spec.maximum)
        return col.cast(pl.Int32, strict=False), _err(~ok, "invalid_integer")
    text = col if dtype == pl.String else col.cast(pl.String)
    if kind is FieldKind.TEXT:
        bad = pl.coalesce(
            _err(text.str.len_chars() > spec.max_length, "too_long"),
            _err(text.str.contains(_CONTROL_RE), "invalid_text"),
        )
        return text, bad
    if kind is FieldKind.CODE:
        bad = pl.coalesce(
            _err(text.str.len_chars() > spec.max_length, "too_long"),
            _err(~text.str.contains(_CODE_RE), "invalid_code"),
        )
        return text, bad
    if kind is FieldKind.ENUM or kind is FieldKind.SUBJECT_TYPE:
        return text, _err(~text.is_in(list(spec.values)), "invalid_enum")
    if kind is FieldKind.REGION:
        province_ok = text.str.slice(0, 2).is_in(list(PROVINCE_CODES))
        return text, _err(~(text.str.contains(_REGION_RE) & province_ok), "invalid_region")
    if kind is FieldKind.AMOUNT:
        ok = text.str.contains(_AMOUNT_RE)
        return text.cast(pl.Decimal(18, 2), strict=False), _err(~ok, "invalid_amount")
    if kind is FieldKind.SHARE:
        ok = text.str.contains(_SHARE_RE)
        value = text.cast(pl.Decimal(5, 4), strict=False)
        return value, _err(~ok | (value <= 0), "invalid_share")
    if kind is FieldKind.INTEGER:
        value = text.cast(pl.Int64, strict=False)
        ok = text.str.contains(_INTEGER_RE) & value.is_between(spec.minimum, spec.maximum)
        return value.cast(pl.Int32, strict=False), _err(~ok, "invalid_integer")
    # Identifiers are checked per distinct value in _identifier_errors.
    return text, pl.lit(None, dtype=pl.String)


def _parse_date(col: pl.Expr, dtype: pl.DataType, *, monthly: bool) -> tuple[pl.Expr, pl.Expr]:
    if dtype == pl.Date:
        value = col
        bad = _err(value.dt.day() != 1, "invalid_date") if monthly else pl.lit(None, pl.String)
    else:
        text = col if dtype == pl.String else col.cast(pl.String)
        if monthly:
            value = (text + "-01").str.to_date("%Y-%m-%d", strict=False)
            shape_ok = text.str.contains(_MONTH_RE)
        else:
            value = text.str.to_date("%Y-%m-%d", strict=False)
            shape_ok = text.str.contains(_DATE_RE)
        bad = _err(~shape_ok | value.is_null(), "invalid_date")
    return value, pl.coalesce(bad, _err(value < pl.lit(_EARLIEST), "date_out_of_range"))


def _parse_timestamp(col: pl.Expr, dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr]:
    if isinstance(dtype, pl.Datetime):
        value = (
            col.dt.convert_time_zone("UTC").dt.replace_time_zone(None) if dtype.time_zone else col
        )
        value = value.dt.cast_time_unit("us")
        return value, _err(value < pl.lit(_EARLIEST), "date_out_of_range")
    if dtype == pl.Date:
        value = col.cast(pl.Datetime("us"))
        return value, _err(value < pl.lit(_EARLIEST), "date_out_of_range")
    text = col if dtype == pl.String else col.cast(pl.String)
    parts = text.str.extract_groups(_TIMESTAMP_RE)
    base = (parts.struct.field("1") + " " + parts.struct.field("2")).str.to_datetime(
        "%Y-%m-%d %H:%M:%S", strict=False, time_unit="us"
    )
    fraction = parts.struct.field("3").fill_null("0").str.pad_end(6, "0").str.slice(0, 6)
    micros = fraction.cast(pl.Int64, strict=False)
    offset = parts.struct.field("4").fill_null("Z")
    sign = pl.when(offset.str.starts_with("-")).then(-1).otherwise(1)
    offset_minutes = (
        pl.when(offset == "Z")
        .then(0)
        .otherwise(
            sign
            * (
                offset.str.slice(1, 2).cast(pl.Int64, strict=False) * 60
                + offset.str.slice(4, 2).cast(pl.Int64, strict=False)
            )
        )
    )
    value = base + pl.duration(microseconds=micros) - pl.duration(minutes=offset_minutes)
    bad = _err(base.is_null() | (offset_minutes.abs() > 18 * 60), "invalid_timestamp")
    return value, pl.coalesce(bad, _err(value < pl.lit(_EARLIEST), "date_out_of_range"))


# Cross-field rules per table: (field named in the rejection, what must hold).
CrossRule = tuple[str, Callable[[], pl.Expr]]
CROSS_FIELD_RULES: dict[str, tuple[CrossRule, ...]] = {
    "legal_entity": (("status_date", lambda: pl.col("status_date") >= pl.col("established_on")),),
    "relation": (
        (
            "share",
            lambda: (pl.col("role") == "shareholder") == pl.col("share").is_not_null(),
        ),
        ("valid_to", lambda: pl.col("valid_to") >= pl.col("valid_from")),
    ),
    "credit_account": (
        ("closed_on", lambda: pl.col("closed_on") >= pl.col("opened_on")),
        ("maturity_on", lambda: pl.col("maturity_on") >= pl.col("opened_on")),
    ),
    "public_record": (
        (
            "cleared_on",
            lambda: (pl.col("status") == "cleared") == pl.col("cleared_on").is_not_null(),
        ),
        ("cleared_on", lambda: pl.col("cleared_on") >= pl.col("event_date")),
    ),
}


def _identifier_errors(
    frame: pl.DataFrame, spec: TableSpec, pseudonymiser: Pseudonymiser, today: date
) -> pl.DataFrame:
    """Per row: reason/detail for each identifier field, and person keys. One check per value."""
    out = frame.select(ROW_COLUMN)
    for field_spec in spec.fields:
        if field_spec.kind not in (FieldKind.USCC, FieldKind.RESIDENT_ID, FieldKind.SUBJECT_ID):
            continue
        name = field_spec.name
        if field_spec.kind is FieldKind.SUBJECT_ID:
            pairs = frame.select(
                pl.col("subject_type").cast(pl.String).alias("t"),
                pl.col(name).cast(pl.String).alias("v"),
            )
        else:
            kind = "entity" if field_spec.kind is FieldKind.USCC else "person"
            pairs = frame.select(pl.lit(kind).alias("t"), pl.col(name).cast(pl.String).alias("v"))
        distinct = pairs.unique().drop_nulls()
        types = distinct["t"].to_list()
        values = distinct["v"].to_list()
        details: list[str | None] = []
        keys: list[str | None] = []
        for kind_name, value in zip(types, values, strict=True):
            if value == "":
                details.append(None)
                keys.append(None)
                continue
            if kind_name == "person":
                rule = resident_id_rejection(value, today=today)
                details.append(rule)
                keys.append(pseudonymiser.person_key(value) if rule is None else None)
            elif kind_name == "entity":
                rule = uscc_rejection(value)
                details.append(rule)
                keys.append(value if rule is None else None)
            else:  # subject_type itself is invalid and rejected on its own
                details.append(None)
                keys.append(None)
        lookup = pl.DataFrame(
            {"t": types, "v": values, f"_detail_{name}": details, f"_key_{name}": keys},
            schema={
                "t": pl.String,
                "v": pl.String,
                f"_detail_{name}": pl.String,
                f"_key_{name}": pl.String,
            },
        )
        joined = pairs.with_columns(frame[ROW_COLUMN]).join(
            lookup, on=["t", "v"], how="left", maintain_order="left"
        )
        out = out.with_columns(joined[f"_detail_{name}"], joined[f"_key_{name}"])
    return out


def validate_frame(
    frame: pl.DataFrame,
    spec: TableSpec,
    pseudonymiser: Pseudonymiser,
    *,
    today: date,
    keep_resident_id: bool = False,
) -> ValidationResult:
    """Split ``frame`` (file columns plus ROW_COLUMN) into storable and rejected rows."""
    missing = [name for name in spec.field_names if name not in frame.columns]
    if missing:
        raise ValueError(f"table {spec.name!r}: missing columns {missing}")
    ident = _identifier_errors(frame, spec, pseudonymiser, today)
    frame = frame.with_columns(ident.drop(ROW_COLUMN))

    values: list[pl.Expr] = []
    errors: list[tuple[str, pl.Expr]] = []
    for field_spec in spec.fields:
        name = field_spec.name
        dtype = frame.schema[name]
        value, bad = parse_field(field_spec, dtype)
        present = _present(pl.col(name), dtype)
        if field_spec.kind in (FieldKind.USCC, FieldKind.RESIDENT_ID, FieldKind.SUBJECT_ID):
            value = pl.col(f"_key_{name}")
            bad = _err(pl.col(f"_detail_{name}").is_not_null(), "invalid_identifier")
        missing_reason = "missing_field" if field_spec.required else None
        reason = pl.when(~present).then(pl.lit(missing_reason, pl.String)).otherwise(bad)
        values.append(pl.when(present).then(value).alias(name))
        errors.append((name, reason))

    detail_cols = [c for c in frame.columns if c.startswith("_detail_")]
    typed = frame.select(
        ROW_COLUMN,
        *detail_cols,
        *values,
        *[reason.alias(f"_err_{name}") for name, reason in errors],
    )

    # Event dates may not be after the record was reported.
    report_day = pl.col("reported_at").dt.date()
    for name in spec.event_dates:
        col = pl.col(name)
        later = col > (
            pl.col("reported_at") if spec.field(name).kind is FieldKind.TIMESTAMP else report_day
        )
        typed = typed.with_columns(
            pl.coalesce(pl.col(f"_err_{name}"), _err(later, "date_after_report")).alias(
                f"_err_{name}"
            )
        )
    field_order = [name for name, _ in errors]
    first_field = pl.coalesce(
        [pl.when(pl.col(f"_err_{n}").is_not_null()).then(pl.lit(n)) for n in field_order]
    )
    first_reason = pl.coalesce([pl.col(f"_err_{n}") for n in field_order])
    for rule_field, rule in CROSS_FIELD_RULES.get(spec.name, ()):
        broken = rule().not_().fill_null(False)
        first_field = pl.coalesce(first_field, pl.when(broken).then(pl.lit(rule_field)))
        first_reason = pl.coalesce(first_reason, _err(broken, "inconsistent_fields"))
    detail_parts: list[pl.Expr] = [
        pl.when(first_field == name).then(pl.col(f"_detail_{name}"))
        for name in (c.removeprefix("_detail_") for c in detail_cols)
    ]
    detail = pl.coalesce(detail_parts or [pl.lit(None, pl.String)])
    typed = typed.with_columns(
        first_field.alias(FIELD_COLUMN), first_reason.alias(REASON_COLUMN), detail.alias("_detail")
    )

    rejected = typed.filter(pl.col(REASON_COLUMN).is_not_null()).select(
        ROW_COLUMN,
        pl.col(FIELD_COLUMN).alias("field"),
        pl.col(REASON_COLUMN).alias("reason"),
        pl.col("_detail").alias("detail"),
    )
    valid = typed.filter(pl.col(REASON_COLUMN).is_null())
    renames = {f.name: f.stored_name for f in spec.fields if f.stored_name != f.name}
    valid = valid.select(ROW_COLUMN, *spec.field_names).rename(renames)
    if spec.name == "natural_person":
        valid = _with_person_attributes(valid, frame, keep_resident_id=keep_resident_id)
    return ValidationResult(valid=valid.select(ROW_COLUMN, *spec.stored_columns), rejected=rejected)


def _with_person_attributes(
    valid: pl.DataFrame, frame: pl.DataFrame, *, keep_resident_id: bool
) -> pl.DataFrame:
    """Birth date, gender and division code read off the (valid) identity number."""
    raw = frame.select(ROW_COLUMN, pl.col("resident_id").cast(pl.String).alias("_raw_id"))
    valid = valid.join(raw, on=ROW_COLUMN, how="left", maintain_order="left")
    sequence_digit = pl.col("_raw_id").str.slice(16, 1).cast(pl.Int32)
    return valid.with_columns(
        pl.col("_raw_id").str.slice(6, 8).str.to_date("%Y%m%d").alias("birth_date"),
        pl.when(sequence_digit % 2 == 1)
        .then(pl.lit("male"))
        .otherwise(pl.lit("female"))
        .alias("gender"),
        pl.col("_raw_id").str.slice(0, 6).alias("id_region"),
        (pl.col("_raw_id") if keep_resident_id else pl.lit(None, pl.String)).alias("resident_id"),
    ).drop("_raw_id")
