"""Reading reported files (CSV, Parquet) as batches of one table's columns.

CSV is read as text, every column a string, so that validation sees exactly what
the reporter wrote; rows with the wrong number of fields are set aside as
malformed, not guessed at. Parquet keeps its column types. Line numbers name the
physical line of the CSV file (header = line 1); for Parquet and in-memory frames
they are the line the row would have in the equivalent CSV file (row index + 2).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from records.tables import TableSpec

__all__ = ["BatchSource", "open_batches"]


@dataclass
class BatchSource:
    """Batches of one table's file columns, with what is needed to locate a row."""

    batches: Iterator[pl.DataFrame]
    total_rows: int | None
    progress_unit: str  # "rows" or "bytes"
    malformed: list[str] = field(default_factory=list)
    bytes_read: Callable[[], int] = lambda: 0
    path: Path | None = None

    def resolve_lines(self, rows: list[int]) -> tuple[dict[int, int], list[int | None]]:
        """Line numbers of the given parsed rows (0-based), and of each malformed row."""
        if self.path is None or self.progress_unit == "rows":
            return {row: row + 2 for row in rows}, [None] * len(self.malformed)
        if not self.malformed and not _has_blank_lines(self.path):
            return {row: row + 2 for row in rows}, []
        return _scan_lines(self.path, set(rows), self.malformed)


def open_batches(
    path: Path, spec: TableSpec, *, batch_rows: int, csv_block_bytes: int
) -> BatchSource:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _open_csv(path, spec, csv_block_bytes)
    if suffix in (".parquet", ".pq"):
        return _open_parquet(path, spec, batch_rows)
    raise ValueError(f"unsupported file type {suffix!r}; expected .csv or .parquet")


def check_columns(spec: TableSpec, columns: list[str]) -> None:
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        raise ValueError(f"columns appear more than once: {duplicates}")
    missing = [c for c in spec.field_names if c not in columns]
    unexpected = [c for c in columns if c not in spec.field_names]
    problems = []
    if missing:
        problems.append(f"missing columns {missing}")
    if unexpected:
        problems.append(f"unexpected columns {unexpected}")
    if problems:
        raise ValueError(
            f"header does not match table {spec.name!r}: "
            + "; ".join(problems)
            + f" (expected {list(spec.field_names)})"
        )


class _CountingReader(io.RawIOBase):
    """Counts the bytes pyarrow has read, for the progress bar."""

    def __init__(self, handle: io.BufferedReader) -> None:
        self._handle = handle
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = self._handle.readinto(buffer)
        self.count += n
        return n

    def close(self) -> None:
        self._handle.close()
        super().close()


def _read_header(path: Path) -> list[str]:
    with path.open("rb") as handle:
        first = handle.readline(1 << 20)
    if not first.strip():
        raise ValueError("file is empty or has no header line")
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError("header line is not valid UTF-8") from None
    return next(csv.reader([text.rstrip("\r\n")]))


def _open_csv(path: Path, spec: TableSpec, block_bytes: int) -> BatchSource:
    header = _read_header(path)
    check_columns(spec, header)
    malformed: list[str] = []

    def on_invalid(row: pa_csv.InvalidRow) -> str:
        malformed.append(row.text)
        return "skip"

    counter = _CountingReader(path.open("rb"))
    reader = pa_csv.open_csv(
        counter,
        read_options=pa_csv.ReadOptions(block_size=block_bytes, encoding="utf8"),
        parse_options=pa_csv.ParseOptions(invalid_row_handler=on_invalid),
        convert_options=pa_csv.ConvertOptions(
            column_types={name: pa.string() for name in header},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )

    def batches() -> Iterator[pl.DataFrame]:
        try:
            for record_batch in reader:
                frame = pl.from_arrow(pa.Table.from_batches([record_batch]))
                assert isinstance(frame, pl.DataFrame)
                yield frame.select(spec.field_names)
        finally:
            counter.close()

    return BatchSource(
        batches=batches(),
        total_rows=None,
        progress_unit="bytes",
        malformed=malformed,
        bytes_read=lambda: counter.count,
        path=path,
    )


def _open_parquet(path: Path, spec: TableSpec, batch_rows: int) -> BatchSource:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise ValueError(f"not a readable Parquet file ({type(err).__name__})") from err
    check_columns(spec, list(parquet.schema_arrow.names))

    def batches() -> Iterator[pl.DataFrame]:
        try:
            for record_batch in parquet.iter_batches(
                batch_size=batch_rows, columns=list(spec.field_names)
            ):
                frame = pl.from_arrow(pa.Table.from_batches([record_batch]))
                assert isinstance(frame, pl.DataFrame)
                yield frame
        finally:
            parquet.close()

    return BatchSource(
        batches=batches(),
        total_rows=parquet.metadata.num_rows,
        progress_unit="rows",
        path=path,
    )


def _has_blank_lines(path: Path) -> bool:
    """True if the CSV has an empty line (pyarrow skips those, shifting line numbers)."""
    previous = b"\n"
    with path.open("rb") as handle:
        handle.readline()  # header
        while chunk := handle.read(1 << 22):
            joined = previous[-1:] + chunk
            if b"\n\n" in joined or b"\n\r\n" in joined:
                return True
            previous = chunk
    return False


def _scan_lines(
    path: Path, wanted: set[int], malformed: list[str]
) -> tuple[dict[int, int], list[int | None]]:
    """Walk the file once, matching physical lines to parsed and malformed rows in order."""
    parsed: dict[int, int] = {}
    malformed_lines: list[int | None] = []
    next_malformed = 0
    row = 0
    with path.open("rb") as handle:
        handle.readline()
        for line_number, raw in enumerate(handle, start=2):
            text = raw.rstrip(b"\r\n")
            if not text:
                continue
            if (
                next_malformed < len(malformed)
                and text.decode("utf-8", errors="replace") == malformed[next_malformed]
            ):
                malformed_lines.append(line_number)
                next_malformed += 1
                continue
            if row in wanted:
                parsed[row] = line_number
            row += 1
    malformed_lines += [None] * (len(malformed) - len(malformed_lines))
    return parsed, malformed_lines
