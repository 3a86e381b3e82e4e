"""Records reported to the running service: the SubmitRecords side (no gRPC here).

A reported batch goes through exactly the ingestion code a reporter's file goes through
(:class:`records.ingest.Ingestor`: validation, pseudonymisation, versioning, quarantine,
one transaction), on the service's store. One ingestion runs at a time (they share one
cursor, and serialising them keeps the store's optimistic transactions from conflicting);
the credit inquiries the service records go through the same intake.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from records.ingest import IngestError, Ingestor, IngestSummary
from records.tables import TABLE_ORDER, table_spec
from service.problems import InvalidRequest, ResourceLimit

__all__ = ["RecordIntake", "ReportedBatch"]

MAX_BATCH_ID_LENGTH = 128
_COLUMN_NAME = re.compile(r"[a-z][a-z_]{0,63}")


@dataclass(frozen=True)
class ReportedBatch:
    """One batch as a reporter sent it: rows of file-format text by column name."""

    batch_id: str
    table: str | None  # a records table name; None = not given
    rows: list[dict[str, str]]


class RecordIntake:
    def __init__(self, make_ingestor: Callable[[], Ingestor], *, max_batch_rows: int) -> None:
        self._make_ingestor = make_ingestor
        self._ingestor: Ingestor | None = None
        self._lock = threading.Lock()
        self.max_batch_rows = max_batch_rows

    def ingest(
        self, table: str, frame: pl.DataFrame, *, label: str, track_subjects: bool = False
    ) -> IngestSummary:
        """Ingest ``frame`` (file columns as text) into ``table``; durable once returned."""
        with self._lock:
            if self._ingestor is None:
                self._ingestor = self._make_ingestor()
            return self._ingestor.ingest_frame(
                table, frame, label=label, track_subjects=track_subjects
            )

    def submit(self, batch: ReportedBatch, *, reporter: str, at: str) -> IngestSummary:
        """Check, then ingest one reported batch; ``at`` names the batch in its label
        (and the request fields in errors), e.g. ``batches[2]``. The summary lists the
        touched subjects and a rejection per bad row."""
        frame = self.frame(batch, at=at)
        label = f"rpc:{reporter}:{batch.batch_id}" if batch.batch_id else f"rpc:{reporter}"
        assert batch.table is not None
        try:
            return self.ingest(batch.table, frame, label=label, track_subjects=True)
        except IngestError:
            # A batch the ingestion refuses as a whole (it says why in the ingestion
            # history); nothing of it was stored.
            raise InvalidRequest(
                f"{at}.rows", "unreadable_batch", f"{at}: the batch could not be read as a whole"
            ) from None

    def frame(self, batch: ReportedBatch, *, at: str) -> pl.DataFrame:
        """The batch as a frame of the table's file columns, all text; a contract error
        (no table, an unknown column, too many rows, a bad batch id) fails the batch."""
        if batch.table is None:
            raise InvalidRequest(f"{at}.table", "required", f"{at}.table is required")
        if batch.table not in TABLE_ORDER:
            raise InvalidRequest(f"{at}.table", "unknown_value", f"{at}.table is not a table")
        if len(batch.batch_id) > MAX_BATCH_ID_LENGTH or not batch.batch_id.isprintable():
            raise InvalidRequest(
                f"{at}.batch_id",
                "bad_format",
                f"{at}.batch_id must be at most {MAX_BATCH_ID_LENGTH} printable characters",
            )
        if len(batch.rows) > self.max_batch_rows:
            raise ResourceLimit(
                f"{at} has {len(batch.rows)} rows; a batch carries at most "
                f"{self.max_batch_rows} (split it)"
            )
        columns = table_spec(batch.table).field_names
        known = set(columns)
        for index, row in enumerate(batch.rows):
            unknown = sorted(set(row) - known)
            if unknown:
                # Echo a name only when it looks like one (never a stray identity number).
                name = repr(unknown[0]) if _COLUMN_NAME.fullmatch(unknown[0]) else "a field"
                raise InvalidRequest(
                    f"{at}.rows[{index}].fields",
                    "unknown_column",
                    f"{at}.rows[{index}]: {name} is not a column of table {batch.table}",
                )
        return pl.DataFrame(
            {name: [row.get(name) or None for row in batch.rows] for name in columns},
            schema={name: pl.String for name in columns},
        )
