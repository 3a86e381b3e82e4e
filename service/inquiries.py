"""Scoring queries recorded as credit inquiries (who asked, for what purpose, when).

Bureau practice: a lender's query about a subject is itself a record on the subject's file
(many recent inquiries are a warning sign). Queries are queued on the request path and
written in batches by one background thread through the same ingestion code as any
reporter's file (validation, pseudonymisation, versioning, reconciled summary), so an
inquiry is a record like any other. ``close`` writes what is queued.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

import polars as pl

from records.tables import table_spec
from service.intake import RecordIntake

__all__ = ["InquiryRecorder"]

_log = logging.getLogger(__name__)
_TABLE = "credit_inquiry"


class InquiryRecorder:
    def __init__(self, intake: RecordIntake, *, flush_seconds: float = 1.0) -> None:
        self._intake = intake
        self._flush_seconds = flush_seconds
        self._queue: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self.recorded = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="inquiry-writer", daemon=True)
        self._thread.start()

    def record(
        self,
        *,
        inquiry_id: str,
        subject_type: str,
        subject_id: str,
        purpose: str,
        inquired_at: datetime,
        source: str,
    ) -> None:
        row = {
            "inquiry_id": inquiry_id,
            "subject_type": subject_type,
            "subject_id": subject_id,
            "purpose": purpose,
            "inquired_at": _iso(inquired_at),
            "source": source,
        }
        with self._lock:
            self._queue.append(row)

    def flush(self) -> None:
        """Write everything queued so far."""
        with self._flush_lock:  # one writer at a time, in queue order
            with self._lock:
                rows, self._queue = self._queue, []
            if rows:
                self._write(rows)

    def _write(self, rows: list[dict[str, str]]) -> None:
        spec = table_spec(_TABLE)
        reported_at = _iso(datetime.now(UTC))
        frame = pl.DataFrame(
            [{**row, "reported_at": reported_at} for row in rows],
            schema={name: pl.String for name in spec.field_names},
        )
        try:
            summary = self._intake.ingest(_TABLE, frame, label="service inquiries")
        except Exception:  # a failed write must not stop the service; it is logged
            self.failed += len(rows)
            _log.exception("could not record %d credit inquiries", len(rows))
            return
        self.recorded += summary.accepted
        if summary.rejected:
            self.failed += summary.rejected
            _log.error("%d credit inquiries rejected; see the quarantine", summary.rejected)

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._flush_seconds)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join()
        self.flush()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")
