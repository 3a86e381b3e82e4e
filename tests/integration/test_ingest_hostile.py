"""Hostile files on the ingestion path (issue 9, part 3): malformed CSV and Parquet.

For every file: only documented outcomes. Either the whole file is refused (IngestError,
CLI exit 1, a message naming what is wrong) and every table's row count is unchanged
but for one ``failed`` ingestion row; or bad lines and rows are quarantined with a
documented reason, the valid rows are stored, and the summary, the ingestion history and
the quarantine reconcile. Nothing crashes, hangs or prints to stderr (pyarrow's own
handlers included: an "exception ignored" report is turned into a test error here).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import TEST_SECRET, TODAY, entity_row, make_resident_id, person_row, write_csv
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from records.ingest import IngestError, Ingestor, IngestSummary
from records.pseudonym import Pseudonymiser
from records.store import RecordStore
from records.tables import TABLE_ORDER
from records.validation import REASONS

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")

TABLES = (*TABLE_ORDER, "quarantine")


def counts(store: RecordStore) -> dict[str, int]:
    out = {table: store.count(table) for table in TABLES}
    for status, n in store.query("SELECT status, count(*) FROM ingestion GROUP BY ALL"):
        out[f"ingestion:{status}"] = int(n)
    return out


def refused(store: RecordStore, ingestor: Ingestor, table: str, path: Path, match: str) -> str:
    """The file is refused with a message matching ``match`` and nothing is stored."""
    before = counts(store)
    with pytest.raises(IngestError, match=match) as caught:
        ingestor.ingest_file(table, path)
    after = counts(store)
    assert after.pop("ingestion:failed", 0) == before.pop("ingestion:failed", 0) + 1
    assert after == before
    error = store.scalar("SELECT error FROM ingestion ORDER BY ingestion_id DESC LIMIT 1")
    assert error and len(error) < 1_000
    return str(caught.value)


def stored(store: RecordStore, ingestor: Ingestor, table: str, path: Path) -> IngestSummary:
    """The file is ingested and everything reconciles: summary, store, history, quarantine."""
    before = counts(store)
    summary = ingestor.ingest_file(table, path)
    after = counts(store)
    assert summary.reconciles
    assert set(summary.reasons) <= set(REASONS)
    assert after[table] - before[table] == summary.accepted
    assert after["quarantine"] - before["quarantine"] == summary.rejected
    assert after.get("ingestion:committed", 0) == before.get("ingestion:committed", 0) + 1
    history = store.query(
        "SELECT read_rows, accepted_rows, duplicate_rows, rejected_rows FROM ingestion "
        "WHERE ingestion_id = ?",
        [summary.ingestion_ids[0]],
    )
    assert history == [(summary.read, summary.accepted, summary.duplicate, summary.rejected)]
    return summary


def quarantined(store: RecordStore) -> list[tuple[object, ...]]:
    return store.query("SELECT line, field, reason FROM quarantine ORDER BY line NULLS LAST")


def valid_csv(path: Path, n: int = 5) -> Path:
    written: Path = write_csv(path, [entity_row(i) for i in range(1, n + 1)])
    return written


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")


# -- CSV: the whole file is refused ---------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "file is empty or has no header line"),
        (b"\n\n", "file is empty or has no header line"),
        (b"\x89PNG\r\n\x1a\n" + random.Random(9).randbytes(4096), "header line is not valid UTF-8"),
        (b"\xff\xfeu\x00s\x00c\x00c\x00\n", "header line is not valid UTF-8"),
        (b"uscc,name\r1,2\r3,4\r", "header line holds a carriage return"),
        (b"uscc,na\x00me\n", r"header does not match .*unexpected columns \['na\\x00me'\]"),
    ],
    ids=["empty", "blank-lines", "binary-garbage", "utf16", "cr-line-ends", "nul-in-header"],
)
def test_files_without_a_usable_header_are_refused(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor, content: bytes, match: str
) -> None:
    path = tmp_path / "le.csv"
    path.write_bytes(content)
    refused(store, ingestor, "legal_entity", path, match)


@pytest.mark.parametrize(
    ("rename", "match"),
    [
        (lambda cols: [c for c in cols if c != "name"], r"missing columns \['name'\]"),
        (lambda cols: [*cols, "comment"], r"unexpected columns \['comment'\]"),
        (
            lambda cols: ["company_name" if c == "name" else c for c in cols],
            r"missing columns \['name'\]; unexpected columns \['company_name'\]",
        ),
        (lambda cols: [*cols, "name"], r"columns appear more than once: \['name'\]"),
        (lambda cols: [f"junk{i}" for i in range(500)], r"unexpected columns .* and 490 more"),
    ],
    ids=["missing", "extra", "renamed", "repeated", "hundreds-of-junk-columns"],
)
def test_wrong_columns_refuse_the_file_naming_them(
    tmp_path: Path,
    store: RecordStore,
    ingestor: Ingestor,
    rename: Callable[[list[str]], list[str]],
    match: str,
) -> None:
    columns = list(entity_row(1))
    header = rename(columns)
    values = [v or "" for v in entity_row(1).values()]
    body = [",".join((values + [""] * len(header))[: len(header)])]
    path = tmp_path / "le.csv"
    path.write_text("\n".join([",".join(header), *body]) + "\n")
    refused(store, ingestor, "legal_entity", path, match)


def test_a_header_longer_than_the_line_limit_is_refused(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor
) -> None:
    path = tmp_path / "le.csv"
    path.write_bytes(b"uscc," + b"x" * (1 << 17) + b"\n")
    refused(store, ingestor, "legal_entity", path, "header line is longer than 65,536 bytes")


def test_an_unclosed_quote_is_refused_not_swallowed(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor
) -> None:
    path = valid_csv(tmp_path / "le.csv", 2)
    with path.open("ab") as handle:
        handle.write(b'"never closed,\n' + b"x,y\n" * 60_000)
    refused(store, ingestor, "legal_entity", path, "quoted field is never closed")


# -- CSV: bad lines quarantined, the rest stored ---------------------------------------------


def test_header_only_files_store_nothing_and_reconcile(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor
) -> None:
    header = lines_of(valid_csv(tmp_path / "v.csv"))[0]
    for name, content in (("nl", header + b"\n"), ("no-nl", header), ("crlf", header + b"\r\n")):
        path = tmp_path / f"{name}.csv"
        path.write_bytes(content)
        summary = stored(store, ingestor, "legal_entity", path)
        assert (summary.read, summary.accepted, summary.rejected) == (0, 0, 0)


def test_a_file_cut_mid_line_quarantines_the_cut_line(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor
) -> None:
    data = valid_csv(tmp_path / "v.csv").read_bytes()
    path = tmp_path / "cut.csv"
    path.write_bytes(data[: data.rindex(b",AMR-33")])  # the last line loses two fields
    summary = stored(store, ingestor, "legal_entity", path)
    assert (summary.read, summary.accepted, summary.reasons) == (5, 4, {"malformed_row": 1})
    assert quarantined(store) == [(6, None, "malformed_row")]


def test_a_file_cut_inside_the_last_field_rejects_that_field(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor
) -> None:
    data = valid_csv(tmp_path / "v.csv").read_bytes()
    path = tmp_path / "cut.csv"
    path.write_bytes(data[:-8])  # reported_at of the last row loses its seconds
    summary = stored(store, ingestor, "legal_entity", path)
    assert summary.reasons == {"invalid_timestamp": 1}
    assert quarantined(store) == [(6, "reported_at", "invalid_timestamp")]


def test_a_file_cut_inside_a_quoted_field(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor
) -> None:
    rows = [entity_row(1), entity_row(2, name="Smith, Jones and Partners"), entity_row(3)]
    data = write_csv(tmp_path / "v.csv", rows).read_bytes()
    path = tmp_path / "cut.csv"
    path.write_bytes(data[: data.index(b"Smith, Jones") + 8])
    summary = stored(store, ingestor, "legal_entity", path)
    assert (summary.read, summary.accepted, summary.reasons) == (2, 1, {"malformed_row": 1})
    assert quarantined(store) == [(3, None, "malformed_row")]


def test_nul_bytes_in_a_field_and_as_a_line(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor
) -> None:
    lines = lines_of(valid_csv(tmp_path / "v.csv"))
    lines[2] = lines[2].replace(b"Test Company 2", b"Test\x00Company 2")
    lines[3] = lines[3].replace(b"AMR-33", b"AMR\x00-33")
    lines.insert(4, b"\x00" * 64)
    path = tmp_path / "nul.csv"
    path.write_bytes(b"\n".join(lines))
    summary = stored(store, ingestor, "legal_entity", path)
    assert (summary.read, summary.accepted) == (6, 3)
    assert quarantined(store) == [
        (3, "name", "invalid_text"),
        (4, "source", "invalid_code"),
        (5, None, "malformed_row"),
    ]
    assert "\x00" not in json.dumps(store.query("SELECT * FROM legal_entity"), default=str)


def test_invalid_utf8_midway_quarantines_only_that_line_and_prints_nothing(
    tmp_path: Path,
    store: RecordStore,
    ingestor: Ingestor,
    capfd: pytest.CaptureFixture[str],
) -> None:
    path = write_csv(tmp_path / "le.csv", [entity_row(i) for i in range(1, 3001)])
    lines = lines_of(path)
    lines[1500] = lines[1500].replace(b"Test Company", b"Test \xff\xfe Company")  # past 64 KiB
    lines[2999] = b"\xc3\x28" + lines[2999]  # an invalid two-byte sequence at a line's start
    path.write_bytes(b"\n".join(lines))
    summary = stored(store, ingestor, "legal_entity", path)
    assert (summary.read, summary.accepted, summary.reasons) == (
        3000,
        2998,
        {"invalid_encoding": 2},
    )
    assert quarantined(store) == [
        (1501, None, "invalid_encoding"),
        (3000, None, "invalid_encoding"),
    ]
    raw = store.query("SELECT raw_row, message FROM quarantine ORDER BY line")
    assert "Test \ufffd\ufffd Company" in raw[0][0] and "UTF-8" in raw[0][1]
    assert capfd.readouterr().err == ""


def test_text_in_amounts_and_dates_is_rejected_per_field(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor
) -> None:
    rows = [
        entity_row(1, registered_capital="one million"),
        entity_row(2, established_on="yesterday"),
        entity_row(3, reported_at="2024-01-02T10:00:00\x07"),
        entity_row(4, registered_capital="1" * 40),
        entity_row(5),
    ]
    summary = stored(store, ingestor, "legal_entity", write_csv(tmp_path / "le.csv", rows))
    assert summary.accepted == 1
    assert quarantined(store) == [
        (2, "registered_capital", "invalid_amount"),
        (3, "established_on", "invalid_date"),
        (4, "reported_at", "invalid_timestamp"),
        (5, "registered_capital", "invalid_amount"),
    ]


def test_a_50_mb_field_is_quarantined_with_bounded_memory(
    tmp_path: Path, store: RecordStore, pseudonymiser: Pseudonymiser
) -> None:
    lines = lines_of(valid_csv(tmp_path / "v.csv", 3))
    lines[2] = lines[2].replace(b"Test Company 2", b"A" * (50 << 20))
    path = tmp_path / "huge.csv"
    path.write_bytes(b"\n".join(lines))
    ingestor = Ingestor(store, pseudonymiser, today=TODAY, csv_block_bytes=1 << 20)
    tracemalloc.start()
    try:
        summary = stored(store, ingestor, "legal_entity", path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 12 << 20, f"peak {peak:,} bytes of Python memory for a 50 MB line"
    assert (summary.read, summary.accepted, summary.reasons) == (3, 2, {"line_too_long": 1})
    assert quarantined(store) == [(3, None, "line_too_long")]
    raw_row = store.scalar("SELECT raw_row FROM quarantine")
    assert len(raw_row) < 1_100 and raw_row.endswith("...")


def test_the_default_line_limit_holds_a_50_mb_field_too(
    tmp_path: Path, store: RecordStore, pseudonymiser: Pseudonymiser
) -> None:
    lines = lines_of(valid_csv(tmp_path / "v.csv", 3))
    lines[2] = lines[2].replace(b"Test Company 2", b'"' + b"B" * (50 << 20) + b'"')
    path = tmp_path / "huge.csv"
    path.write_bytes(b"\n".join(lines))
    summary = stored(store, Ingestor(store, pseudonymiser, today=TODAY), "legal_entity", path)
    assert summary.reasons == {"line_too_long": 1}
    assert quarantined(store) == [(3, None, "line_too_long")]


def test_a_long_line_under_the_limit_is_a_too_long_value_cut_in_the_quarantine(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor
) -> None:
    rows = [entity_row(1, name="N" * 30_000), entity_row(2)]
    summary = stored(store, ingestor, "legal_entity", write_csv(tmp_path / "le.csv", rows))
    assert summary.reasons == {"too_long": 1}
    raw = json.loads(store.scalar("SELECT raw_row FROM quarantine"))
    assert raw["name"].startswith("NNN") and len(raw["name"]) < 1_100


def test_resident_ids_in_rejected_lines_are_masked(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor
) -> None:
    person = make_resident_id(7)
    rows = [person_row(1), person_row(7)]
    path = write_csv(tmp_path / "np.csv", rows)
    lines = lines_of(path)
    lines[2] = lines[2] + b",\xff"  # not UTF-8 and one field too many
    lines.append(person.encode() + b",too,many,fields,here,now")  # malformed
    lines.append(b"x" * 70_000 + person.encode())  # too long
    path.write_bytes(b"\n".join(lines))
    summary = stored(store, ingestor, "natural_person", path)
    assert summary.reasons == {"invalid_encoding": 1, "malformed_row": 1, "line_too_long": 1}
    dump = json.dumps(store.query("SELECT * FROM quarantine"), default=str)
    assert person not in dump and dump.count(person[:6] + "********" + person[-4:]) == 2


def test_a_file_without_header_is_refused_without_quoting_identity_numbers(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor
) -> None:
    person = make_resident_id(5)
    path = tmp_path / "np.csv"
    path.write_text(f"{person},330106,bachelor,PSB-33,2024-01-02T10:00:00\n")
    message = refused(store, ingestor, "natural_person", path, "header does not match")
    masked = person[:6] + "********" + person[-4:]
    assert person not in message and masked in message
    assert store.scalar("SELECT error FROM ingestion") == message.split(": ", 1)[1]


# -- the command line ------------------------------------------------------------------------


def credit_risk(*args: str) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("credit-risk", path=str(Path(sys.executable).parent))
    assert executable, "credit-risk console script is not installed"
    return subprocess.run(
        [executable, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_cli_quarantines_bad_lines_and_refuses_bad_files_with_exit_1(tmp_path: Path) -> None:
    lines = lines_of(valid_csv(tmp_path / "v.csv", 4))
    lines[2] = b"\xff" + lines[2]
    bad_lines = tmp_path / "bad-lines.csv"
    bad_lines.write_bytes(b"\n".join(lines))
    bad_header = tmp_path / "bad-header.csv"
    bad_header.write_bytes(b"uscc,name\n1,2\n")
    data = ["--data-dir", str(tmp_path / "data")]
    result = credit_risk("ingest", "legal_entity", str(bad_lines), "--json", *data)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    summary = json.loads(result.stdout)
    assert (summary["read"], summary["accepted"], summary["reasons"]) == (
        4,
        3,
        {"invalid_encoding": 1},
    )
    result = credit_risk("ingest", "legal_entity", str(bad_header), "--json", *data)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {bad_header}: header does not match")
    assert "missing columns" in result.stderr and "Traceback" not in result.stderr
    assert json.loads(result.stdout)["accepted"] == 0


# -- Parquet -----------------------------------------------------------------------------------


def entity_table(n: int = 5) -> pa.Table:
    return pa.Table.from_pylist([entity_row(i) for i in range(1, n + 1)])


def with_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def write_parquet(path: Path, table: pa.Table) -> Path:
    pq.write_table(table, path)
    return path


@pytest.mark.parametrize("cut", [0, 4, 100, 0.5, -8, -1])
def test_truncated_parquet_is_refused(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor, cut: float
) -> None:
    data = write_parquet(tmp_path / "v.parquet", entity_table(200)).read_bytes()
    end = int(len(data) * cut) if isinstance(cut, float) else cut % len(data) if cut else 0
    path = tmp_path / "cut.parquet"
    path.write_bytes(data[:end])
    refused(store, ingestor, "legal_entity", path, "not a readable Parquet file")


def test_garbage_between_parquet_magic_numbers_is_refused(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor
) -> None:
    path = tmp_path / "junk.parquet"
    path.write_bytes(b"PAR1" + random.Random(3).randbytes(5000) + b"PAR1")
    refused(store, ingestor, "legal_entity", path, "not a readable Parquet file")


def test_parquet_with_wrong_columns_is_refused(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor
) -> None:
    table = entity_table().rename_columns(
        ["company_name" if c == "name" else c for c in entity_table().column_names]
    )
    path = write_parquet(tmp_path / "le.parquet", table)
    refused(store, ingestor, "legal_entity", path, r"missing columns \['name'\]")


@pytest.mark.parametrize(
    ("column", "values", "shown"),
    [
        ("registered_capital", pa.array([[1.0]] * 5), "list<"),
        ("registered_capital", pa.array([{"a": 1}] * 5), "struct<"),
        ("registered_capital", pa.array([True] * 5), "bool"),
        ("name", pa.array([b"\xff\xfe"] * 5, pa.binary()), "binary"),
        ("established_on", pa.array([20150401] * 5, pa.int64()), "int64"),
        ("established_on", pa.array([1] * 5, pa.duration("s")), "duration"),
        ("reported_at", pa.array([1.5] * 5), "double"),
        ("registered_capital", pa.array([1.0] * 5, pa.float16()), "halffloat"),
        ("name", pa.array([{f"f{i}": i for i in range(300)}] * 5), "struct<f0: int64, f1:"),
    ],
    ids=[
        "list",
        "struct",
        "bool",
        "binary",
        "int-date",
        "duration",
        "float-ts",
        "float16",
        "wide-struct",
    ],
)
def test_parquet_columns_of_the_wrong_arrow_type_are_refused_by_name(
    tmp_path: Path,
    store: RecordStore,
    ingestor: Ingestor,
    column: str,
    values: pa.Array,
    shown: str,
) -> None:
    path = write_parquet(tmp_path / "le.parquet", with_column(entity_table(), column, values))
    message = refused(store, ingestor, "legal_entity", path, "a type their field cannot hold")
    assert f"'{column}' is {shown}" in message


@pytest.mark.parametrize(
    "values",
    [
        pa.array([2**30] * 5, pa.date32()),
        pa.array([-(10**15)] * 5, pa.date64()),
    ],
    ids=["date32-year-2.9-million", "date64-year-minus-29719"],
)
def test_parquet_dates_outside_years_1_to_9999_are_refused(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor, values: pa.Array
) -> None:
    table = with_column(entity_table(), "established_on", values)
    path = write_parquet(tmp_path / "le.parquet", table)
    refused(store, ingestor, "legal_entity", path, "'established_on' holds a value outside")


def test_parquet_timestamps_far_out_are_refused(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor
) -> None:
    values = pa.array([2**62] * 5, pa.timestamp("us", tz="Asia/Shanghai"))
    path = write_parquet(
        tmp_path / "le.parquet", with_column(entity_table(), "reported_at", values)
    )
    refused(store, ingestor, "legal_entity", path, "'reported_at' holds a value outside")


def test_parquet_values_that_do_not_fit_are_rejected_per_row(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor
) -> None:
    table = with_column(
        entity_table(7),
        "registered_capital",
        pa.array([float("nan"), float("inf"), 1e300, -0.5, 1.005, 2.0**62, 5.0]),
    )
    table = with_column(
        table, "name", pa.array(["ok", "nul\x00", "ok", "ok", "ok", "ok", "Name " * 100])
    )
    summary = stored(store, ingestor, "legal_entity", write_parquet(tmp_path / "le.parquet", table))
    assert summary.accepted == 0
    assert quarantined(store) == [
        (2, "registered_capital", "invalid_amount"),
        (3, "name", "invalid_text"),
        (4, "registered_capital", "invalid_amount"),
        (5, "registered_capital", "invalid_amount"),
        (6, "registered_capital", "invalid_amount"),
        (7, "registered_capital", "invalid_amount"),
        (8, "name", "too_long"),
    ]


def test_parquet_integers_out_of_range_are_rejected_per_row(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor
) -> None:
    ingestor.ingest_file("natural_person", write_csv(tmp_path / "np.csv", [person_row(1)]))
    account = {
        "account_id": "A1",
        "subject_type": "person",
        "subject_id": make_resident_id(1),
        "product": "credit_card",
        "opened_on": "2022-01-10",
        "maturity_on": None,
        "closed_on": None,
        "credit_limit": "50000.00",
        "guarantee_type": "unsecured",
        "source": "P0001",
        "reported_at": "2022-01-11T00:00:00",
    }
    ingestor.ingest_file("credit_account", write_csv(tmp_path / "a.csv", [account]))
    months = [f"2023-{m:02d}" for m in range(1, 5)]
    frame = pl.DataFrame(
        {
            "account_id": ["A1"] * 4,
            "period": months,
            "balance": [100.0] * 4,
            "amount_due": [10.0] * 4,
            "amount_paid": [10.0] * 4,
            "overdue_days": pl.Series([0, 2**40, -(2**40), 2**63 - 1], dtype=pl.Int64),
            "overdue_amount": [0.0] * 4,
            "status": ["normal"] * 4,
            "source": ["P0001"] * 4,
            "reported_at": ["2023-06-10T00:00:00"] * 4,
        }
    )
    path = tmp_path / "rep.parquet"
    frame.write_parquet(path)
    summary = stored(store, ingestor, "repayment", path)
    assert (summary.accepted, summary.reasons) == (1, {"invalid_integer": 3})


# -- properties: random damage never crashes and never stores part of a refused file ----------

_VALID_CSV = b""
_VALID_PARQUET = b""


def _valid_files(tmp: Path) -> tuple[bytes, bytes]:
    global _VALID_CSV, _VALID_PARQUET
    if not _VALID_CSV:
        rows = [entity_row(i) for i in range(1, 9)]
        rows[3]["name"] = "Quoted, with comma"
        _VALID_CSV = write_csv(tmp / "valid.csv", rows).read_bytes()
        _VALID_PARQUET = write_parquet(tmp / "valid.parquet", entity_table(8)).read_bytes()
    return _VALID_CSV, _VALID_PARQUET


_INSERTS = st.sampled_from(
    [b"\x00", b"\xff", b"\xc3", b'"', b",", b"\n", b"\r", b"\r\n", b"\xe2\x80\xa8", b"\\"]
)
_EDIT = st.one_of(
    st.tuples(st.just("insert"), st.floats(0, 1), _INSERTS),
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(1, 255)),
    st.tuples(st.just("delete"), st.floats(0, 1), st.integers(1, 40)),
    st.tuples(st.just("truncate"), st.floats(0, 1), st.just(0)),
)


def _damage(data: bytes, edits: list[tuple[str, float, object]]) -> bytes:
    buffer = bytearray(data)
    for kind, where, what in edits:
        at = min(int(where * len(buffer)), max(len(buffer) - 1, 0))
        if kind == "insert":
            assert isinstance(what, bytes)
            buffer[at:at] = what
        elif kind == "flip" and buffer:
            assert isinstance(what, int)
            buffer[at] ^= what
        elif kind == "delete":
            assert isinstance(what, int)
            del buffer[at : at + what]
        elif kind == "truncate":
            del buffer[at:]
    return bytes(buffer)


def _ingest_damaged(directory: Path, suffix: str, data: bytes) -> None:
    path = directory / f"damaged{suffix}"
    path.write_bytes(data)
    with RecordStore(":memory:") as store:
        ingestor = Ingestor(store, Pseudonymiser(TEST_SECRET), today=TODAY, csv_block_bytes=1 << 16)
        before = counts(store)
        started = time.monotonic()
        try:
            summary = ingestor.ingest_file("legal_entity", path)
        except IngestError:
            assert time.monotonic() - started < 10, "a small damaged file took too long"
            after = counts(store)
            assert after.pop("ingestion:failed") == 1
            assert after == before
            return
        assert time.monotonic() - started < 10, "a small damaged file took too long"
        assert summary.reconciles
        assert set(summary.reasons) <= set(REASONS)
        assert store.count("legal_entity") == summary.accepted
        assert store.count("quarantine") == summary.rejected


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(edits=st.lists(_EDIT, min_size=1, max_size=6))
def test_random_damage_to_a_csv_never_crashes_nor_stores_part_of_a_refused_file(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], edits: list[tuple[str, float, object]]
) -> None:
    csv_bytes, _ = _valid_files(tmp_path)
    _ingest_damaged(tmp_path, ".csv", _damage(csv_bytes, edits))
    assert capfd.readouterr().err == ""


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(edits=st.lists(_EDIT, min_size=1, max_size=3))
def test_random_damage_to_a_parquet_file_never_crashes_nor_stores_part_of_it(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], edits: list[tuple[str, float, object]]
) -> None:
    _, parquet_bytes = _valid_files(tmp_path)
    _ingest_damaged(tmp_path, ".parquet", _damage(parquet_bytes, edits))
    assert capfd.readouterr().err == ""


def test_parquet_strings_that_are_not_utf8_refuse_the_file(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor
) -> None:
    table = entity_table(2)
    offsets = pa.array([0, 2, 4], pa.int32()).buffers()[1]
    names = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(b"ok\xff\xfe")])
    path = write_parquet(tmp_path / "le.parquet", with_column(table, "name", names))
    refused(store, ingestor, "legal_entity", path, "Parquet data unreadable after 0 rows")


def test_parquet_metadata_that_is_not_utf8_is_ignored(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor
) -> None:
    table = entity_table(2)
    field = table.schema.field("name").with_metadata({b"note": b"\xff\xfe"})
    table = table.cast(table.schema.set(table.schema.get_field_index("name"), field))
    table = table.replace_schema_metadata({b"origin": b"\xc3\x28"})
    summary = stored(store, ingestor, "legal_entity", write_parquet(tmp_path / "le.parquet", table))
    assert summary.accepted == 2


def test_a_50_mb_parquet_value_is_a_too_long_value_cut_in_the_quarantine(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor
) -> None:
    names = pa.array(["N" * (50 << 20), "ok", "ok"])
    path = write_parquet(tmp_path / "le.parquet", with_column(entity_table(3), "name", names))
    assert path.stat().st_size < 5 << 20  # compressed: the size on disk says little
    summary = stored(store, ingestor, "legal_entity", path)
    assert (summary.accepted, summary.reasons) == (2, {"too_long": 1})
    raw = json.loads(store.scalar("SELECT raw_row FROM quarantine"))
    assert len(raw["name"]) < 1_100


@pytest.mark.parametrize("end", [b"\n", b"\r\n"])
@pytest.mark.parametrize(("extra", "reason"), [(0, "too_long"), (1, "line_too_long")])
def test_the_line_limit_is_exact(
    tmp_path: Path, store: RecordStore, ingestor: Ingestor, end: bytes, extra: int, reason: str
) -> None:
    lines = lines_of(valid_csv(tmp_path / "v.csv", 3))
    long_line = lines[2].replace(b"Test Company 2", b"N" * (65_536 - len(lines[2]) + 14 + extra))
    assert len(long_line) == 65_536 + extra  # the fixture's limit: csv_block_bytes=1 << 16
    path = tmp_path / "le.csv"
    path.write_bytes(end.join([lines[0], lines[1], long_line, lines[3], b""]))
    summary = stored(store, ingestor, "legal_entity", path)
    assert (summary.accepted, summary.reasons) == (2, {reason: 1})
    assert quarantined(store)[0][0] == 3
