"""File format of the generated tables: text columns, CSV/Parquet files and the manifest."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import polars as pl

from records.tables import TABLE_ORDER, FieldKind, table_spec

if TYPE_CHECKING:
    from records.generator.faults import InjectedFault

__all__ = ["to_file_frame", "write_files"]

_CSV_CHUNK_ROWS: Final = 1_000_000


def amount_text(col: pl.Expr) -> pl.Expr:
    """Exactly two decimals: ``1234.50``."""
    cents = (col.cast(pl.Float64) * 100.0).round(0).cast(pl.Int64)
    size = cents.abs()
    return pl.concat_str(
        pl.when(cents < 0).then(pl.lit("-")).otherwise(pl.lit("")),
        (size // 100).cast(pl.String),
        pl.lit("."),
        (size % 100).cast(pl.String).str.zfill(2),
    )


def share_text(col: pl.Expr) -> pl.Expr:
    """Up to four decimals, no trailing zeros: ``1``, ``0.25``, ``0.3333``."""
    units = (col.cast(pl.Float64) * 10_000.0).round(0).cast(pl.Int64)
    fraction = (units % 10_000).cast(pl.String).str.zfill(4).str.strip_chars_end("0")
    whole = (units // 10_000).cast(pl.String)
    return (
        pl.when(fraction == "").then(whole).otherwise(pl.concat_str(whole, pl.lit("."), fraction))
    )


def _text(name: str, kind: FieldKind, dtype: pl.DataType) -> pl.Expr:
    col = pl.col(name)
    if dtype == pl.String:
        return col
    if dtype == pl.Null:
        return col.cast(pl.String)
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        col = col.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    if kind is FieldKind.DATE:
        return col.dt.strftime("%Y-%m-%d")
    if kind is FieldKind.MONTH:
        return col.dt.strftime("%Y-%m")
    if kind is FieldKind.TIMESTAMP:
        return col.dt.strftime("%Y-%m-%dT%H:%M:%S")
    if kind is FieldKind.AMOUNT:
        return amount_text(col)
    if kind is FieldKind.SHARE:
        return share_text(col)
    return col.cast(pl.String)


def to_file_frame(table: str, df: pl.DataFrame) -> pl.DataFrame:
    """The table's columns, in declared order, as the strings a reporter would write.

    DATE ``%Y-%m-%d``, MONTH ``%Y-%m``, TIMESTAMP ``%Y-%m-%dT%H:%M:%S`` (UTC), AMOUNT with
    exactly two decimals, SHARE with up to four, INTEGER plain; nulls stay null. Columns
    that already are strings are passed through unchanged.
    """
    spec = table_spec(table)
    missing = [name for name in spec.field_names if name not in df.columns]
    if missing:
        raise ValueError(f"table {table!r}: missing columns {missing}")
    return df.select([_text(f.name, f.kind, df.schema[f.name]).alias(f.name) for f in spec.fields])


def write_files(
    frames: dict[str, pl.DataFrame],
    directory: Path,
    fmt: Literal["csv", "parquet"],
    faults: list[InjectedFault] | None = None,
) -> list[Path]:
    """One file per table (``<table>.csv`` or ``<table>.parquet``) plus ``manifest.json``.

    CSV files have a header line and one line per row, in frame order, so row ``i`` is on
    line ``i + 2``; typed frames are converted with :func:`to_file_frame`. Parquet keeps the
    given dtypes. Returns the data files in ``TABLE_ORDER``.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"unsupported format {fmt!r}; expected 'csv' or 'parquet'")
    unknown = sorted(set(frames) - set(TABLE_ORDER))
    if unknown:
        raise ValueError(f"unknown tables {unknown}")
    directory.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    entries: list[dict[str, object]] = []
    for table in TABLE_ORDER:
        if table not in frames:
            continue
        frame = frames[table]
        path = directory / f"{table}.{fmt}"
        if fmt == "csv":
            _write_csv(table, frame, path)
        else:
            frame.write_parquet(path)
        paths.append(path)
        entries.append({"table": table, "file": path.name, "rows": frame.height})
    manifest = {
        "tables": entries,
        "faults": [asdict(fault) for fault in faults or []],
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return paths


def _write_csv(table: str, frame: pl.DataFrame, path: Path) -> None:
    """Converted and written in chunks, so the text copy of a huge table is never whole."""
    with path.open("wb") as handle:
        if frame.height == 0:
            to_file_frame(table, frame).write_csv(handle)
            return
        for offset in range(0, frame.height, _CSV_CHUNK_ROWS):
            chunk = to_file_frame(table, frame.slice(offset, _CSV_CHUNK_ROWS))
            chunk.write_csv(handle, include_header=offset == 0)
