"""Reading reported files (CSV, Parquet) as batches of one table's columns.

CSV is read as text, every column a string, so that validation sees exactly what
the reporter wrote; rows with the wrong number of fields are set aside as
malformed, not guessed at. Before pyarrow sees the bytes, every physical line
(ended by ``\n``) is checked: a line that is not valid UTF-8, or longer than the
line limit (``ingest.csv_block_bytes``), is held back and reported as a rejected
line, so that one bad line never fails the whole file and memory stays bounded
however long a line is. Parquet keeps its column types, but a column whose Arrow
type cannot hold its field (a list, a struct, binary, a duration, ...) refuses the
file. Line numbers name the physical line of the CSV file (header = line 1); for
Parquet and in-memory frames they are the line the row would have in the
equivalent CSV file (row index + 2).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from records.tables import FieldKind, TableSpec

__all__ = ["PREVIEW_CHARS", "BatchSource", "LineRejection", "open_batches", "preview"]

# The most characters of a rejected line (or of one rejected value) kept for the quarantine.
PREVIEW_CHARS = 1000
_READ_BYTES = 1 << 20  # the line filter reads the file in pieces of this size


def preview(text: str) -> str:
    """``text`` cut to PREVIEW_CHARS; a cut never ends in digits (part of an identity
    number that the masking would then not recognise)."""
    if len(text) <= PREVIEW_CHARS:
        return text
    return text[:PREVIEW_CHARS].rstrip("0123456789Xx") + "..."


@dataclass(frozen=True)
class LineRejection:
    """A CSV line held back before parsing: ``invalid_encoding`` or ``line_too_long``."""

    line: int  # physical line number (header = 1)
    reason: str
    text: str  # a preview of the line, undecodable bytes replaced


@dataclass
class BatchSource:
    """Batches of one table's file columns, with what is needed to locate a row."""

    batches: Iterator[pl.DataFrame]
    total_rows: int | None
    progress_unit: str  # "rows" or "bytes"
    malformed: list[str] = field(default_factory=list)  # previews of malformed rows
    bytes_read: Callable[[], int] = lambda: 0
    path: Path | None = None
    line_rejects: list[LineRejection] = field(default_factory=list)
    max_line_bytes: int = 0

    def resolve_lines(self, rows: list[int]) -> tuple[dict[int, int], list[int | None]]:
        """Line numbers of the given parsed rows (0-based), and of each malformed row."""
        if self.path is None or self.progress_unit == "rows":
            return {row: row + 2 for row in rows}, [None] * len(self.malformed)
        if not self.malformed and not self.line_rejects and not _has_blank_lines(self.path):
            return {row: row + 2 for row in rows}, []
        skipped = {r.line for r in self.line_rejects}
        return _scan_lines(self.path, set(rows), self.malformed, skipped, self.max_line_bytes)


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
        shown = [_short(name, 40) for name in unexpected[:10]]
        more = f" and {len(unexpected) - 10} more" if len(unexpected) > 10 else ""
        problems.append(f"unexpected columns {shown}{more}")
    if problems:
        raise ValueError(
            f"header does not match table {spec.name!r}: "
            + "; ".join(problems)
            + f" (expected {list(spec.field_names)})"
        )


def _read_header(path: Path, max_bytes: int) -> list[str]:
    with path.open("rb") as handle:
        first = handle.readline(max_bytes + 2)
        if not first.endswith(b"\n") and handle.read(1):
            raise ValueError(f"header line is longer than {max_bytes:,} bytes")
    if not first.strip():
        raise ValueError("file is empty or has no header line")
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError("header line is not valid UTF-8") from None
    text = text.rstrip("\r\n")
    if "\r" in text:
        raise ValueError(
            "the header line holds a carriage return: lines must end with \\n or \\r\\n"
        )
    try:
        return next(csv.reader([text]))
    except csv.Error as err:  # e.g. a carriage return inside the line
        raise ValueError(f"header line is not a CSV line ({err})") from None


def _open_csv(path: Path, spec: TableSpec, block_bytes: int) -> BatchSource:
    header = _read_header(path, block_bytes)
    check_columns(spec, header)
    malformed: list[str] = []

    def on_invalid(row: pa_csv.InvalidRow) -> str:
        malformed.append(preview(row.text))
        return "skip"

    lines = _LineFilter(path.open("rb"), max_line_bytes=block_bytes)
    try:
        reader = pa_csv.open_csv(  # reads the first block already
            lines,
            read_options=pa_csv.ReadOptions(block_size=block_bytes, encoding="utf8"),
            parse_options=pa_csv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as err:
        lines.close()
        raise _clearer(err, block_bytes) from None
    except BaseException:
        lines.close()
        raise

    def batches() -> Iterator[pl.DataFrame]:
        try:
            for record_batch in _csv_batches(reader, block_bytes):
                frame = pl.from_arrow(pa.Table.from_batches([record_batch]))
                assert isinstance(frame, pl.DataFrame)
                yield frame.select(spec.field_names)
        finally:
            lines.close()

    return BatchSource(
        batches=batches(),
        total_rows=None,
        progress_unit="bytes",
        malformed=malformed,
        bytes_read=lambda: lines.count,
        path=path,
        line_rejects=lines.rejected,
        max_line_bytes=block_bytes,
    )


def _csv_batches(reader: pa_csv.CSVStreamingReader, block_bytes: int) -> Iterator[pa.RecordBatch]:
    try:
        yield from reader
    except pa.ArrowInvalid as err:
        raise _clearer(err, block_bytes) from None


def _clearer(err: Exception, block_bytes: int) -> Exception:
    """pyarrow's parse error, in words about the file where pyarrow's are about itself."""
    if "straddl" not in str(err) and "out of sync" not in str(err):
        return err
    # Every line is within the limit (the filter sees to that), so pyarrow loses track
    # only of a record that runs over line ends inside a quoted field, across a block.
    return ValueError(
        "a quoted field is never closed: a record runs over line ends past a read "
        f"block of {block_bytes:,} bytes (ingest.csv_block_bytes)"
    )


class _LineFilter(io.RawIOBase):
    """The CSV bytes for pyarrow, line by line: a line that is not valid UTF-8 or is
    longer than ``max_line_bytes`` (its end excluded) is held back and recorded in
    ``rejected`` instead; the last line is given its end. At most about
    ``max_line_bytes`` plus one read piece are held in memory, whatever the lines.
    ``count`` is the bytes read from the file, for the progress bar."""

    def __init__(self, handle: io.BufferedReader, *, max_line_bytes: int) -> None:
        self._handle = handle
        self._max = max_line_bytes
        self.count = 0
        self.rejected: list[LineRejection] = []
        self._out = bytearray()  # checked lines, ready for pyarrow
        self._pending = bytearray()  # the start of a line whose end is not read yet
        self._line = 1  # number of the line that _pending starts
        self._skipping = False  # discarding the rest of an over-long line
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._out and not self._eof:
            self._fill()
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        del self._out[:n]
        return n

    def close(self) -> None:
        self._handle.close()
        super().close()

    def _fill(self) -> None:
        chunk = self._handle.read(_READ_BYTES)
        self.count += len(chunk)
        if not chunk:
            self._eof = True
            if self._pending:
                self._check(bytes(self._pending) + b"\n")
                self._pending.clear()
            return
        if self._skipping:
            end = chunk.find(b"\n")
            if end < 0:
                return
            chunk = chunk[end + 1 :]
            self._skipping = False
            self._line += 1
        self._pending += chunk
        cut = self._pending.rfind(b"\n") + 1
        if cut:
            complete = bytes(self._pending[:cut])
            del self._pending[:cut]
            self._check(complete)
        if len(self._pending) > self._max + 1:  # + 1: a "\r" before the "\n" to come
            self._reject(self._line, "line_too_long", bytes(self._pending[: PREVIEW_CHARS * 4]))
            self._pending.clear()
            self._skipping = True

    def _check(self, complete: bytes) -> None:
        """Pass on whole lines (``complete`` ends with a line end), holding back bad ones."""
        count = complete.count(b"\n")
        if len(complete) <= self._max + 1 or max(map(len, complete.split(b"\n"))) <= self._max:
            try:
                complete.decode("utf-8")
            except UnicodeDecodeError:
                pass
            else:
                self._out += complete
                self._line += count
                return
        for piece in complete.split(b"\n")[:-1]:
            if len(piece) - piece.endswith(b"\r") > self._max:  # one "\r" of "\r\n"
                self._reject(self._line, "line_too_long", piece[: PREVIEW_CHARS * 4])
            else:
                try:
                    piece.decode("utf-8")
                except UnicodeDecodeError:
                    self._reject(self._line, "invalid_encoding", piece[: PREVIEW_CHARS * 4])
                else:
                    self._out += piece + b"\n"
            self._line += 1

    def _reject(self, line: int, reason: str, head: bytes) -> None:
        if line == 1:  # the header was checked before; a failure here is the file's
            raise ValueError("header line is not valid UTF-8 or is too long")
        text = preview(head.decode("utf-8", errors="replace").rstrip("\r\n"))
        self.rejected.append(LineRejection(line, reason, text))


def _open_parquet(path: Path, spec: TableSpec, batch_rows: int) -> BatchSource:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise ValueError(f"not a readable Parquet file ({type(err).__name__})") from err
    check_columns(spec, list(parquet.schema_arrow.names))
    check_parquet_types(spec, parquet.schema_arrow)

    def batches() -> Iterator[pl.DataFrame]:
        offset = 0
        try:
            for record_batch in parquet.iter_batches(
                batch_size=batch_rows, columns=list(spec.field_names)
            ):
                record_batch.validate(full=True)  # strings not UTF-8 crash polars
                _check_temporal_range(record_batch, offset)
                offset += record_batch.num_rows
                # Without the file's metadata (polars panics on metadata that is not UTF-8).
                plain = pa.schema([pa.field(f.name, f.type) for f in record_batch.schema])
                record_batch = pa.RecordBatch.from_arrays(record_batch.columns, schema=plain)
                frame = pl.from_arrow(pa.Table.from_batches([record_batch]))
                assert isinstance(frame, pl.DataFrame)
                yield frame
        except (pa.ArrowException, OSError) as err:
            text = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(
                f"Parquet data unreadable after {offset:,} rows (truncated or corrupt: {text})"
            ) from err
        finally:
            parquet.close()

    return BatchSource(
        batches=batches(),
        total_rows=parquet.metadata.num_rows,
        progress_unit="rows",
        path=path,
    )


def _fits(kind: FieldKind, arrow_type: pa.DataType) -> bool:
    """Whether a Parquet column of ``arrow_type`` can hold a field of ``kind``."""
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    types = pa.types
    if (
        types.is_null(arrow_type)
        or types.is_string(arrow_type)
        or types.is_large_string(arrow_type)
        or types.is_string_view(arrow_type)
    ):
        return True
    if kind in (FieldKind.DATE, FieldKind.MONTH):
        return bool(types.is_date(arrow_type))
    if kind is FieldKind.TIMESTAMP:
        return bool(types.is_timestamp(arrow_type) or types.is_date(arrow_type))
    if kind in (FieldKind.AMOUNT, FieldKind.SHARE):
        return bool(
            types.is_integer(arrow_type)
            or arrow_type in (pa.float32(), pa.float64())
            or types.is_decimal128(arrow_type)
        )
    # Integers (and, written as digits, codes, identifiers and text) may be integer columns.
    return bool(types.is_integer(arrow_type))


def check_parquet_types(spec: TableSpec, schema: pa.Schema) -> None:
    """Refuse a file with a column of an Arrow type its field cannot hold."""
    wrong = [
        f"{f.name!r} is {_short(str(schema.field(f.name).type))}"
        for f in spec.fields
        if not _fits(f.kind, schema.field(f.name).type)
    ]
    if wrong:
        raise ValueError(
            "columns of a type their field cannot hold: "
            + "; ".join(wrong)
            + " (text fields take strings or integers, dates date32/date64, timestamps "
            "timestamp or date, amounts and shares integers, float32/64 or decimal128, "
            "integers integer types; any field strings or all nulls)"
        )


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


# Years 1-9999 (what Python's dates hold), as days and as seconds since 1970-01-01.
_FIRST_DAY = (date(1, 1, 1) - date(1970, 1, 1)).days
_LAST_DAY = (date(9999, 12, 31) - date(1970, 1, 1)).days
_FIRST_SECOND = _FIRST_DAY * 86_400
_LAST_SECOND = (_LAST_DAY + 1) * 86_400 - 1
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _check_temporal_range(batch: pa.RecordBatch, offset: int) -> None:
    """Refuse date and timestamp values outside years 1-9999 (a wrong unit, or corrupt)."""
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        arrow_type = column.type
        if pa.types.is_date32(arrow_type):
            values, low, high = column.cast(pa.int32()), _FIRST_DAY, _LAST_DAY
        elif pa.types.is_date64(arrow_type):
            values = column.cast(pa.int64())
            low, high = _FIRST_DAY * 86_400_000, (_LAST_DAY + 1) * 86_400_000 - 1
        elif pa.types.is_timestamp(arrow_type):
            scale = _PER_SECOND[arrow_type.unit]
            values = column.cast(pa.int64())
            low, high = _FIRST_SECOND * scale, _LAST_SECOND * scale + scale - 1
        else:
            continue
        low, high = max(low, -(1 << 63)), min(high, (1 << 63) - 1)
        outside = pc.or_(pc.less(values, low), pc.greater(values, high))
        first = pc.index(outside, True).as_py()
        if first >= 0:
            raise ValueError(
                f"column {name!r} holds a value outside the years 1-9999 at data row "
                f"{offset + first + 1:,} (a wrong time unit, or a corrupt file)"
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
    path: Path,
    wanted: set[int],
    malformed: list[str],
    skipped: set[int],
    max_line_bytes: int,
) -> tuple[dict[int, int], list[int | None]]:
    """Walk the file once, matching physical lines to parsed and malformed rows in order
    (lines in ``skipped`` were held back before parsing)."""
    parsed: dict[int, int] = {}
    malformed_lines: list[int | None] = []
    next_malformed = 0
    row = 0
    with path.open("rb") as handle:
        handle.readline(max_line_bytes + 2)
        for line_number, raw in enumerate(_bounded_lines(handle, max_line_bytes), start=2):
            if line_number in skipped:
                continue
            text = raw.rstrip(b"\r\n")
            if not text:
                continue
            if (
                next_malformed < len(malformed)
                and preview(text.decode("utf-8", errors="replace")) == malformed[next_malformed]
            ):
                malformed_lines.append(line_number)
                next_malformed += 1
                continue
            if row in wanted:
                parsed[row] = line_number
            row += 1
    malformed_lines += [None] * (len(malformed) - len(malformed_lines))
    return parsed, malformed_lines


def _bounded_lines(handle: io.BufferedReader, max_line_bytes: int) -> Iterator[bytes]:
    """The file's lines, each cut after ``max_line_bytes`` + 2 bytes (the rest skipped)."""
    while line := handle.readline(max_line_bytes + 2):
        if not line.endswith(b"\n"):
            while (rest := handle.readline(_READ_BYTES)) and not rest.endswith(b"\n"):
                pass
        yield line
