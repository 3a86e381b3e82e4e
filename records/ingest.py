"""Validated, idempotent, all-or-nothing ingestion of reported records.

One file is one transaction. Rows are read in Arrow batches, validated in bulk
(:mod:`records.validation`), staged in a temporary DuckDB table, checked against
the store (references, versions) with set-based SQL, and then either stored or
quarantined. The summary always reconciles: read = accepted + duplicate + rejected.

Versioning: a record is identified by its table's natural key. The same content
again (same key, same content as the version it would follow) is a duplicate and
adds nothing; different content with a later ``reported_at`` is a new version, and
the old one stays; different content with the *same* key and ``reported_at`` as an
existing version is a conflict and goes to quarantine.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
from tqdm import tqdm

from records.normalise import normalise_identifiers
from records.pseudonym import Pseudonymiser
from records.readers import BatchSource, open_batches, preview
from records.store import RecordStore, quote_identifier
from records.tables import FieldKind, TableSpec, table_spec
from records.validation import REASONS, ROW_COLUMN, validate_frame

__all__ = ["IngestError", "IngestSummary", "Ingestor", "Rejection"]

_STAGE = "_ingest_stage"
_MASKED_KINDS = (FieldKind.RESIDENT_ID, FieldKind.SUBJECT_ID)


class IngestError(RuntimeError):
    """A whole file could not be ingested; the store is unchanged."""


@dataclass(frozen=True)
class Rejection:
    """Why one row was rejected (the quarantine holds the same, with the masked row)."""

    row: int  # 0-based position in the frame or file's parsed rows; -1 = malformed line
    field: str | None  # the column at fault; None when the row as a whole is
    reason: str  # a stable code of records.validation.REASONS
    message: str  # for a human; resident ids masked


@dataclass
class IngestSummary:
    """What one ingestion did. ``read == accepted + duplicate + rejected`` always.

    ``rejections`` and ``touched_subjects`` are for callers answering per row (the
    SubmitRecords RPC) and are not part of the JSON summary: ``touched_subjects`` are the
    keys (USCC or person pseudonym) of the subjects whose records were added, filled only
    when the ingestion was asked to track them."""

    table: str
    files: list[str] = field(default_factory=list)
    read: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    ingestion_ids: list[int] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list, repr=False)
    touched_subjects: list[str] = field(default_factory=list, repr=False)

    @property
    def reconciles(self) -> bool:
        return self.read == self.accepted + self.duplicate + self.rejected

    def add(self, other: IngestSummary) -> None:
        self.files += other.files
        self.read += other.read
        self.accepted += other.accepted
        self.duplicate += other.duplicate
        self.rejected += other.rejected
        self.reasons = dict(Counter(self.reasons) + Counter(other.reasons))
        self.seconds += other.seconds
        self.ingestion_ids += other.ingestion_ids
        self.rejections += other.rejections
        self.touched_subjects = sorted({*self.touched_subjects, *other.touched_subjects})

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["rejections"], out["touched_subjects"]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


@dataclass
class _Reject:
    row: int
    field: str | None
    reason: str
    detail: str | None
    raw: dict[str, Any] | str
    line: int | None = None  # known before parsing (a line held back by the CSV reader)


class Ingestor:
    """Ingests files or frames of one table at a time into a :class:`RecordStore`."""

    def __init__(
        self,
        store: RecordStore,
        pseudonymiser: Pseudonymiser,
        *,
        keep_resident_id: bool = False,
        normalise: bool = False,
        batch_rows: int = 500_000,
        csv_block_bytes: int = 16 << 20,
        progress: bool = False,
        today: date | None = None,
    ) -> None:
        self.store = store
        self.pseudonymiser = pseudonymiser
        self.keep_resident_id = keep_resident_id
        self.normalise = normalise
        self.batch_rows = batch_rows
        self.csv_block_bytes = csv_block_bytes
        self.progress = progress
        self.today = today

    # -- public entry points -------------------------------------------------------------

    def ingest_file(self, table: str, path: Path) -> IngestSummary:
        spec = table_spec(table)
        path = Path(path)
        if not path.is_file():
            raise IngestError(f"{path}: no such file")
        digest, size = _file_digest(path)
        try:
            source = open_batches(
                path, spec, batch_rows=self.batch_rows, csv_block_bytes=self.csv_block_bytes
            )
        except ValueError as err:
            # A header can quote a data line (a file without one): mask identity numbers.
            message = _mask_text(str(err))
            self._record_failure(spec, str(path), digest, size, message)
            raise IngestError(f"{path}: {message}") from err
        return self._ingest(spec, source, label=str(path), digest=digest, size=size)

    def ingest_frame(
        self, table: str, frame: pl.DataFrame, *, label: str, track_subjects: bool = False
    ) -> IngestSummary:
        """Ingest an in-memory frame of file columns (the generator's and the RPC's path);
        with ``track_subjects``, the summary lists the subjects whose records were added."""
        spec = table_spec(table)
        missing = sorted(set(spec.field_names) - set(frame.columns))
        if missing:
            raise IngestError(f"{label}: missing columns {missing}")
        rows = self.batch_rows

        def batches() -> Iterator[pl.DataFrame]:
            yield from frame.select(spec.field_names).iter_slices(rows)

        source = BatchSource(batches=batches(), total_rows=frame.height, progress_unit="rows")
        return self._ingest(
            spec, source, label=label, digest=None, size=None, track_subjects=track_subjects
        )

    # -- the pipeline ----------------------------------------------------------------------

    def _ingest(
        self,
        spec: TableSpec,
        source: BatchSource,
        *,
        label: str,
        digest: str | None,
        size: int | None,
        track_subjects: bool = False,
    ) -> IngestSummary:
        started = time.perf_counter()
        started_at = _utc_now()
        today = self.today or date.today()
        con = self.store.connection
        summary = IngestSummary(table=spec.name, files=[label])
        rejects: list[_Reject] = []
        normalised_values = 0
        try:
            with self.store.transaction():
                ingestion_id = _next_ingestion_id(self.store)
                _create_stage(self.store, spec)
                with tqdm(
                    total=source.total_rows if source.progress_unit == "rows" else size,
                    unit="row" if source.progress_unit == "rows" else "B",
                    unit_scale=True,
                    desc=f"{spec.name}",
                    disable=not self.progress,
                    leave=False,
                ) as bar:
                    offset = 0
                    for batch in source.batches:
                        batch = batch.with_row_index(ROW_COLUMN, offset=offset).with_columns(
                            pl.col(ROW_COLUMN).cast(pl.Int64)
                        )
                        offset += batch.height
                        if self.normalise:
                            batch, changed = normalise_identifiers(batch, spec)
                            normalised_values += changed
                        result = validate_frame(
                            batch,
                            spec,
                            self.pseudonymiser,
                            today=today,
                            keep_resident_id=self.keep_resident_id,
                        )
                        _stage_rows(self.store, spec, result.valid)
                        rejects += self._validation_rejects(spec, batch, result.rejected)
                        bar.update(
                            batch.height
                            if source.progress_unit == "rows"
                            else source.bytes_read() - bar.n
                        )
                summary.read = offset + len(source.malformed) + len(source.line_rejects)
                rejects += [
                    _Reject(-1, None, "malformed_row", None, _mask_text(text))
                    for text in source.malformed
                ]
                rejects += [
                    _Reject(-1, None, r.reason, None, _mask_text(r.text), line=r.line)
                    for r in source.line_rejects
                ]
                rejects += _reference_rejects(self.store, spec)
                rejects += _classify_versions(self.store, spec)
                summary.duplicate = _count(
                    con, f"SELECT count(*) FROM {_STAGE} WHERE _status = 'duplicate'"
                )
                summary.accepted = _store_accepted(self.store, spec, ingestion_id)
                if track_subjects:
                    summary.touched_subjects = _touched_subjects(self.store, spec)
                summary.rejected = len(rejects)
                summary.reasons = dict(Counter(r.reason for r in rejects))
                _quarantine(self.store, spec, ingestion_id, label, digest, rejects, source)
                normalisation = (
                    json.dumps(
                        {
                            "rule": "NFKC, strip, upper-case, drop spaces and hyphens "
                            "in identifiers and codes",
                            "changed_values": normalised_values,
                        }
                    )
                    if self.normalise
                    else None
                )
                self.store.run(
                    "INSERT INTO ingestion VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'committed', "
                    "?, ?, ?, ?, NULL)",
                    [
                        ingestion_id,
                        spec.name,
                        label,
                        digest,
                        size,
                        normalisation,
                        started_at,
                        _utc_now(),
                        summary.read,
                        summary.accepted,
                        summary.duplicate,
                        summary.rejected,
                    ],
                )
                self.store.run(f"DROP TABLE {_STAGE}")
        except IngestError:
            raise
        except (ValueError, OSError, pl.exceptions.PolarsError) as err:
            self._record_failure(spec, label, digest, size, _describe(err))
            raise IngestError(f"{label}: {_describe(err)}; nothing was stored") from err
        summary.seconds = time.perf_counter() - started
        summary.ingestion_ids = [ingestion_id]
        summary.rejections = [
            Rejection(r.row, r.field, r.reason, _message(r))
            for r in sorted(rejects, key=lambda r: r.row)
        ]
        assert summary.reconciles, summary
        return summary

    def _validation_rejects(
        self, spec: TableSpec, batch: pl.DataFrame, rejected: pl.DataFrame
    ) -> list[_Reject]:
        if rejected.height == 0:
            return []
        raw = batch.join(rejected.select(ROW_COLUMN), on=ROW_COLUMN, how="semi")
        raw_rows = {
            row[ROW_COLUMN]: self._mask_row(spec, row)
            for row in raw.select(ROW_COLUMN, *spec.field_names).to_dicts()
        }
        return [
            _Reject(r[ROW_COLUMN], r["field"], r["reason"], r["detail"], raw_rows[r[ROW_COLUMN]])
            for r in rejected.to_dicts()
        ]

    def _mask_row(self, spec: TableSpec, row: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field_spec in spec.fields:
            value = row.get(field_spec.name)
            if isinstance(value, date | datetime):
                value = value.isoformat()
            elif value is not None and not isinstance(value, str | int | float | bool):
                value = str(value)
            if (
                field_spec.kind in _MASKED_KINDS
                and isinstance(value, str)
                and not self.keep_resident_id
                and (
                    field_spec.kind is FieldKind.RESIDENT_ID or row.get("subject_type") != "entity"
                )
            ):
                value = _mask_identifier(value)
            if isinstance(value, str):
                value = preview(value)
            out[field_spec.name] = value
        return out

    def _record_failure(
        self, spec: TableSpec, label: str, digest: str | None, size: int | None, error: str
    ) -> None:
        now = _utc_now()
        with self.store.transaction():
            self.store.run(
                "INSERT INTO ingestion VALUES (?, ?, ?, ?, ?, NULL, ?, ?, 'failed', 0, 0, 0, 0, ?)",
                [_next_ingestion_id(self.store), spec.name, label, digest, size, now, now, error],
            )


# -- staging and set-based checks ------------------------------------------------------------


def _content_columns(spec: TableSpec) -> list[str]:
    # The raw identity number is excluded: whether it is kept is configuration, not content.
    return [c for c in spec.stored_columns if c not in ("reported_at", "resident_id")]


def _create_stage(store: RecordStore, spec: TableSpec) -> None:
    cols = ", ".join(quote_identifier(c) for c in spec.stored_columns)
    store.run(
        f"CREATE TEMP TABLE {_STAGE} AS SELECT {cols}, NULL::BIGINT AS _row, "
        f"NULL::UHUGEINT AS _hash, 'new' AS _status FROM {quote_identifier(spec.name)} "
        "WHERE false"
    )


def _stage_rows(store: RecordStore, spec: TableSpec, valid: pl.DataFrame) -> None:
    if valid.height == 0:
        return
    parts = ", ".join(
        f"coalesce(CAST({quote_identifier(c)} AS VARCHAR), chr(0))" for c in _content_columns(spec)
    )
    cols = ", ".join(quote_identifier(c) for c in spec.stored_columns)
    arrow = valid.to_arrow()
    store.connection.register("_ingest_batch", arrow)
    try:
        store.run(
            f"INSERT INTO {_STAGE} ({cols}, _row, _hash, _status) "
            f"SELECT {cols}, {ROW_COLUMN}, md5_number(concat_ws(chr(31), {parts})), 'new' "
            "FROM _ingest_batch"
        )
    finally:
        store.connection.unregister("_ingest_batch")


def _stage_rows_as_rejects(
    store: RecordStore, spec: TableSpec, where: str, reason: str, field_name: str | None
) -> list[_Reject]:
    cols = [quote_identifier(c) for c in spec.stored_columns if c != "resident_id"]
    rows = store.query(f"SELECT _row, {', '.join(cols)} FROM {_STAGE} WHERE {where} ORDER BY _row")
    names = [c for c in spec.stored_columns if c != "resident_id"]
    rejects = []
    for row in rows:
        raw = {name: _jsonable(value) for name, value in zip(names, row[1:], strict=True)}
        rejects.append(_Reject(int(row[0]), field_name, reason, None, raw))
    if rows:
        store.run(f"DELETE FROM {_STAGE} WHERE {where}")
    return rejects


def _reference_rejects(store: RecordStore, spec: TableSpec) -> list[_Reject]:
    """Rows that name a subject or account the store does not know."""
    rejects: list[_Reject] = []
    checks: list[tuple[str, str, str]] = []  # (where, reason, field)
    if "subject_key" in spec.stored_columns:
        checks.append(
            (
                "(subject_type = 'entity' AND subject_key NOT IN (SELECT uscc FROM legal_entity)) "
                "OR (subject_type = 'person' AND subject_key NOT IN "
                "(SELECT person_key FROM natural_person))",
                "unknown_subject",
                "subject_id",
            )
        )
    if spec.name == "relation":
        checks.append(("uscc NOT IN (SELECT uscc FROM legal_entity)", "unknown_subject", "uscc"))
        checks.append(
            (
                "person_key NOT IN (SELECT person_key FROM natural_person)",
                "unknown_subject",
                "resident_id",
            )
        )
    if spec.name == "repayment":
        checks.append(
            (
                "NOT EXISTS (SELECT 1 FROM credit_account a WHERE a.source = "
                f"{_STAGE}.source AND a.account_id = {_STAGE}.account_id)",
                "unknown_account",
                "account_id",
            )
        )
    for where, reason, field_name in checks:
        rejects += _stage_rows_as_rejects(store, spec, where, reason, field_name)
    return rejects


def _classify_versions(store: RecordStore, spec: TableSpec) -> list[_Reject]:
    """Mark each staged row new, duplicate or conflict; return the conflicts."""
    key = ", ".join(quote_identifier(c) for c in spec.stored_key)
    key_and_time = f"{key}, reported_at"
    target = quote_identifier(spec.name)
    join_on = " AND ".join(
        f"s.{quote_identifier(c)} = t.{quote_identifier(c)}"
        for c in (*spec.stored_key, "reported_at")
    )
    # 1. Several rows of this file with the same key and reported_at: the first one stands.
    store.run(
        f"""
        UPDATE {_STAGE} SET _status = CASE WHEN w._hash = w._first THEN 'duplicate'
                                           ELSE 'conflict' END
        FROM (SELECT _row, _hash,
                     first_value(_hash) OVER (PARTITION BY {key_and_time} ORDER BY _row) AS _first,
                     row_number() OVER (PARTITION BY {key_and_time} ORDER BY _row) AS _rn
              FROM {_STAGE}) w
        WHERE {_STAGE}._row = w._row AND w._rn > 1
        """
    )
    # 2. A stored version with the same key and reported_at.
    store.run(
        f"""
        UPDATE {_STAGE} SET _status = CASE WHEN m._same THEN 'duplicate' ELSE 'conflict' END
        FROM (SELECT s._row, bool_or(s._hash = t.record_hash) AS _same
              FROM {_STAGE} s JOIN {target} t ON {join_on}
              WHERE s._status = 'new' GROUP BY s._row) m
        WHERE {_STAGE}._row = m._row
        """
    )
    # 3. Same content as the version it would follow: nothing new was reported.
    store.run(
        f"""
        UPDATE {_STAGE} SET _status = 'duplicate'
        FROM (
            SELECT _row, _hash = lag(_hash) OVER (PARTITION BY {key} ORDER BY reported_at)
                   AS _same
            FROM (
                SELECT {key_and_time}, record_hash AS _hash, NULL::BIGINT AS _row
                FROM {target} SEMI JOIN (SELECT DISTINCT {key} FROM {_STAGE}) USING ({key})
                UNION ALL
                SELECT {key_and_time}, _hash, _row FROM {_STAGE} WHERE _status = 'new'
            )
        ) v
        WHERE {_STAGE}._row = v._row AND v._same
        """
    )
    return _stage_rows_as_rejects(store, spec, "_status = 'conflict'", "conflicting_version", None)


def _store_accepted(store: RecordStore, spec: TableSpec, ingestion_id: int) -> int:
    cols = ", ".join(quote_identifier(c) for c in spec.stored_columns)
    store.run(
        f"INSERT INTO {quote_identifier(spec.name)} ({cols}, record_hash, ingestion_id) "
        f"SELECT {cols}, _hash, ? FROM {_STAGE} WHERE _status = 'new' ORDER BY _row",
        [ingestion_id],
    )
    return _count(store.connection, f"SELECT count(*) FROM {_STAGE} WHERE _status = 'new'")


def _touched_subjects(store: RecordStore, spec: TableSpec) -> list[str]:
    """Keys of the subjects whose records this ingestion adds (rows staged as new)."""
    new = f"SELECT * FROM {_STAGE} WHERE _status = 'new'"
    if spec.name == "repayment":  # a repayment is about its account's holder
        sql = (
            f"SELECT DISTINCT a.subject_key FROM ({new}) s JOIN credit_account a "
            "ON a.source = s.source AND a.account_id = s.account_id"
        )
    else:
        columns = [c for c in ("uscc", "person_key", "subject_key") if c in spec.stored_columns]
        sql = " UNION ".join(f"SELECT {c} FROM ({new})" for c in columns)
    return sorted(str(row[0]) for row in store.query(sql) if row[0] is not None)


def _quarantine(
    store: RecordStore,
    spec: TableSpec,
    ingestion_id: int,
    label: str,
    digest: str | None,
    rejects: list[_Reject],
    source: BatchSource,
) -> None:
    if not rejects:
        return
    parsed_lines, malformed_lines = source.resolve_lines([r.row for r in rejects if r.row >= 0])
    malformed = iter(malformed_lines)
    now = _utc_now()
    records = []
    for reject in rejects:
        if reject.line is not None:
            line: int | None = reject.line
        elif reject.row >= 0:
            line = parsed_lines[reject.row]
        else:
            line = next(malformed, None)
        message = _message(reject)
        raw = reject.raw if isinstance(reject.raw, str) else json.dumps(reject.raw, sort_keys=True)
        records.append(
            (
                ingestion_id,
                spec.name,
                label,
                digest,
                line,
                reject.field,
                reject.reason,
                message,
                raw,
                now,
            )
        )
    frame = pl.DataFrame(
        records,
        schema={
            "ingestion_id": pl.Int64,
            "table_name": pl.String,
            "file": pl.String,
            "file_sha256": pl.String,
            "line": pl.Int64,
            "field": pl.String,
            "reason": pl.String,
            "message": pl.String,
            "raw_row": pl.String,
            "quarantined_at": pl.Datetime("us"),
        },
        orient="row",
    )
    store.connection.register("_quarantine_batch", frame.to_arrow())
    try:
        # The same file again must not add the same rejection twice.
        store.run(
            "INSERT INTO quarantine SELECT * FROM _quarantine_batch q WHERE q.file_sha256 IS NULL "
            "OR NOT EXISTS (SELECT 1 FROM quarantine e WHERE e.file_sha256 = q.file_sha256 "
            "AND e.table_name = q.table_name AND e.line IS NOT DISTINCT FROM q.line "
            "AND e.reason = q.reason)"
        )
    finally:
        store.connection.unregister("_quarantine_batch")


# -- small helpers ------------------------------------------------------------------------------


def _message(reject: _Reject) -> str:
    text = REASONS.get(reject.reason, reject.reason)
    where = f"field {reject.field!r}: " if reject.field else ""
    detail = f" ({reject.detail})" if reject.detail else ""
    return f"{where}{text}{detail}"


def _mask_identifier(value: str) -> str:
    if len(value) <= 10:
        return "*" * len(value)
    return value[:6] + "*" * (len(value) - 10) + value[-4:]


def _mask_text(text: str) -> str:
    # An 18-character number (17 digits and a check character) first, else 15 digits.
    return re.sub(r"\d{17}[0-9Xx]|\d{15}", _mask_match, text)


def _mask_match(match: Any) -> str:
    return _mask_identifier(str(match.group(0)))


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)


def _count(con: Any, sql: str) -> int:
    row = con.execute(sql).fetchall()
    return int(row[0][0]) if row else 0


def _next_ingestion_id(store: RecordStore) -> int:
    return _count(store.connection, "SELECT nextval('ingestion_id_seq')")


def _file_digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _describe(err: BaseException) -> str:
    """A one-line reason for a failed file, with anything shaped like an identity
    number masked: library messages can quote the row they choked on."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return _mask_text(text[:300])


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
